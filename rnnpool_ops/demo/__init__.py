"""The demonstration run behind `python -m rnnpool_ops`: data, a small multi-exit ReX/RNNPool model,
training, policy evaluation and the fused-vs-unfused speed table."""
