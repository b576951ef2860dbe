"""`python -m rnnpool_ops`: train a small multi-exit ReX/RNNPool network and report on it."""

import argparse
import importlib.util
import time

import torch

from ..analysis import count_parameters
from . import data
from .evaluate import POLICIES, evaluate
from .memory import stream_demo
from .model import LAYERS, build_model, patch_sweep_layers
from .speed import speed_table
from .train import train


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m rnnpool_ops",
        description="Train a small multi-exit ReX/RNNPool network on generated (or bundled) data, evaluate its exit "
                    "policies (accuracy, exit histogram, average MAdds, benefit-curve PNGs) and time the "
                    "fused against the unfused layers. Nothing is downloaded.")
    parser.add_argument("--dataset", choices=sorted(data.DATASETS), default="lines",
                        help="lines: RNNPool appendix C's line orientations, generated (default); "
                             "digits: scikit-learn's digits upscaled (needs scikit-learn)")
    parser.add_argument("--model", choices=sorted(LAYERS), default="rex", help="pooling layer (default rex)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--policy", choices=sorted(POLICIES) + ["all"], default="all",
                        help="exit policy to evaluate (default all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="training device (default cpu; the fused kernel runs on CPU, CUDA uses the reference)")
    parser.add_argument("--samples", type=int, default=8000,
                        help="training images (default 8000; a quarter as many test images)")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    parser.add_argument("--out", default="demo_output", help="folder for the benefit-curve PNGs (default demo_output)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, initialisation and order (default 0)")
    parser.add_argument("--stream-size", type=int, metavar="N",
                        help="instead: run one NxN image (say 2048) through MobileNetV2-RNNPool, plain and streamed "
                             "(rnnpool_ops.streaming), and print the memory each took, measured, against the "
                             "analytical peak")
    args = parser.parse_args(argv)
    if args.stream_size is not None and args.stream_size < 32:
        parser.error("--stream-size must be at least 32 (MobileNetV2-RNNPool downsamples 32 times)")
    if args.epochs < 1 or args.samples < 1 or args.batch_size < 1:
        parser.error("--epochs, --samples and --batch-size must be positive")
    if args.dataset == "digits" and importlib.util.find_spec("sklearn") is None:
        parser.error("--dataset digits needs scikit-learn (pip install scikit-learn)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.stream_size is not None:
        return stream_demo(args.stream_size)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    dataset = data.load(args.dataset, args.samples, args.seed)
    model = build_model(args.model, dataset.num_classes).to(args.device)
    print(f"Dataset {dataset.name}: {len(dataset.train.labels)} training / {len(dataset.test.labels)} test images, "
          f"{dataset.num_classes} classes, 1x{data.IMAGE_SIZE}x{data.IMAGE_SIZE}")
    print(f"Model: {args.model} multi-exit network, {model.num_exits} exits, "
          f"{count_parameters(model):,} parameters, device {args.device}")
    train(model, dataset.train, args.epochs, args.batch_size, args.seed, args.device)
    evaluate(model, dataset.test, sorted(POLICIES) if args.policy == "all" else [args.policy], args.out)
    speed_table(model, patch_sweep_layers(model), dataset.train.images[:args.batch_size].to(args.device))
    print(f"\nDone in {time.perf_counter() - started:.0f} s")
