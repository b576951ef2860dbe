"""Non-contiguous copies of an image batch [N, C, H, W], for the kernels' layout tests."""

import torch

NON_CONTIGUOUS_LAYOUTS = ["channels_last", "sliced", "transposed"]


def non_contiguous(x, layout):
    """The values of x in a non-contiguous tensor of the given layout."""
    if layout == "channels_last":
        y = x.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        y = torch.cat([x, x], dim=3)[..., ::2]
    elif layout == "transposed":
        y = x.transpose(2, 3).contiguous().transpose(2, 3)
    else:
        raise ValueError(f"layout must be one of {NON_CONTIGUOUS_LAYOUTS}, got {layout!r}")
    assert not y.is_contiguous()
    return y
