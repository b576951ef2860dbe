"""The patch sweep on Triton kernels: rnnpool::forward_triton / backward_triton (backend "triton").

kernels.py holds the @triton.jit kernels and their launchers, sweep.py the forward and backward
around them, op.py the triton_op registrations. Importing this package does not import triton;
`load()` does, on first use (which must come after TRITON_INTERPRET is set, for the CPU
interpreter). On a machine with a GPU the ops are loaded when rnnpool_ops is imported, so that
torch.compile, tracing a call with backend "triton", finds them registered and `available()`
already answered.
"""

import torch

_available = None  # whether load() worked; None until first asked
_load_error = None


def load():
    """Import the kernels and register the ops (idempotent); returns the op module.

    Raises ImportError when triton is missing or fails to import.
    """
    from . import op

    return op


def available():
    """Whether the Triton backend loads here (asked once, then remembered); unavailable_reason() says why not."""
    global _available, _load_error
    if _available is None:
        try:
            load()
            _available = True
        # ImportError: not installed. Anything else: a triton or torch whose API differs from the one
        # this was written for; `import rnnpool_ops` must still work (it loads this at import on a GPU).
        except Exception as error:  # noqa: BLE001
            _available, _load_error = False, error
    return _available


def unavailable_reason():
    return f"the Triton backend does not load: {type(_load_error).__name__}: {_load_error}"


if torch.cuda.is_available():
    available()
