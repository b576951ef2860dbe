"""Training with ReX's cumulative loss (eq. 12) over every exit."""

import torch

from ..multiexit import rex_cumulative_loss
from .progress import ProgressBar


def train(model, split, epochs, batch_size, seed, device, learning_rate=3e-3):
    """Adam with a cosine learning-rate schedule; prints a progress bar and the mean loss per epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    batches = (len(split.labels) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * batches)
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(split.labels), generator=generator)
        bar = ProgressBar(batches, f"epoch {epoch}/{epochs}")
        total_loss = 0.0
        for step in range(batches):
            rows = order[step * batch_size:(step + 1) * batch_size]
            images, labels = split.images[rows].to(device), split.labels[rows].to(device)
            loss = rex_cumulative_loss(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
            bar.update(step + 1, f"loss {total_loss / (step + 1):.3f}")
        bar.close(f"loss {total_loss / batches:.3f}")
    model.eval()
