"""DistributedDataParallel: two CPU processes (gloo) train a small ReX multi-exit model for a few
steps; parameters must stay identical across ranks."""

import datetime
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rnnpool_ops import ReX2d
from rnnpool_ops.multiexit import MultiExitNetwork, SDNHead, rex_cumulative_loss

WORLD_SIZE = 2
STEPS = 3


def small_rex_network():
    torch.manual_seed(0)  # identical initial weights on every rank (DDP broadcasts rank 0's anyway)
    stages = [nn.Sequential(ReX2d(3, 4, 2, kernel_size=4, stride=2), nn.ReLU()),
              nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())]
    return MultiExitNetwork(stages, {0: SDNHead(16, 5, 7), 1: SDNHead(8, 5, 7)})


def train(rank, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(small_rex_network())
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        data = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
        for _ in range(STEPS):
            x, y = torch.randn(4, 3, 16, 16, generator=data), torch.randint(0, 5, (4,), generator=data)
            optimiser.zero_grad()
            rex_cumulative_loss(model(x), y).backward()
            optimiser.step()
        results[rank] = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_keeps_ranks_identical():
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    results = mp.Manager().dict()
    context = mp.start_processes(train, args=(free_port(), results), nprocs=WORLD_SIZE, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + 90  # never hang CI: kill the workers instead
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):  # raises if a worker failed
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP workers did not finish within 90 s")
    initial = torch.cat([p.detach().flatten() for p in small_rex_network().parameters()])
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], initial)  # it did train
