"""RNNPool2d and ReX2d: modules holding the cells (rnn1, rnn2) and, for ReX, the projection f_L.

Their `backend` ("auto", "cpp", "triton", "reference"; rnnpool_ops.functional says what each runs on)
is an attribute and may be changed after construction (rnnpool_ops.swap.set_backend does it for a
whole model).
"""

from torch import nn

from . import _validate, edgeml, functional
from ._checks import VALID_PARTS, output_channels
from .cells import cell_kind, cell_nonlinearities, cell_parameters, make_cell


class _PatchSweep2d(nn.Module):
    def __init__(self, in_channels, hidden1, hidden2, kernel_size, stride, padding, cell, gate, update, parts,
                 backend):
        super().__init__()
        if parts not in VALID_PARTS:
            raise ValueError(f"parts must be one of {VALID_PARTS}, got {parts!r}")
        if backend not in functional.BACKENDS:
            raise ValueError(f"backend must be one of {functional.BACKENDS}, got {backend!r}")
        self.in_channels, self.hidden1, self.hidden2 = (_validate.integer(name, value, 1) for name, value in
                                                        (("in_channels", in_channels), ("hidden1", hidden1),
                                                         ("hidden2", hidden2)))
        self.kernel_size = _validate.integer_pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _validate.integer_pair("stride", stride, 1)
        self.padding = _validate.integer_pair("padding", padding, 0)
        self.parts = parts
        self.backend = backend
        self.fixed_input_size = self.fixed_input_origin = None
        self.out_channels = output_channels(parts, hidden2)
        self.rnn1 = make_cell(cell, in_channels, hidden1, gate, update)
        self.rnn2 = make_cell(cell, hidden1, hidden2, gate, update)
        if "G" in parts:
            self.proj = nn.Linear((self.kernel_size[0] + self.kernel_size[1]) * hidden1, 4 * hidden2)

    def fix_input_size(self, size, origin):
        """Accept only (H, W) = size maps: the geometry was derived from that size (`origin` says where)."""
        self.fixed_input_size, self.fixed_input_origin = tuple(size), origin

    def _check_input_size(self, x):
        size = tuple(x.shape[-2:])
        if self.fixed_input_size is not None and size != self.fixed_input_size:
            height, width = self.fixed_input_size
            raise ValueError(
                f"{self.fixed_input_origin}: its kernel_size {self.kernel_size} and stride {self.stride} fit "
                f"{height}x{width} maps only, got x of shape {list(x.shape)}; swap again with the input_shape "
                "the model runs at")

    def forward(self, x):
        self._check_input_size(x)
        return self.sweep(x)

    def sweep(self, x, padding=None):
        """The layer's op on x with another padding (None: the layer's own), without the input-size
        check: rnnpool_ops.streaming runs stripes of rows, padding their top and bottom itself."""
        gate, update = cell_nonlinearities(self.rnn1)
        proj = getattr(self, "proj", None)
        return functional.patch_sweep(
            x, cell_parameters(self.rnn1), cell_parameters(self.rnn2),
            None if proj is None else proj.weight, None if proj is None else proj.bias,
            self.kernel_size, self.stride, self.padding if padding is None else padding, cell_kind(self.rnn1),
            gate, update, self.parts, self.backend,
        )

    def extra_repr(self):
        return (f"{self.in_channels}, hidden1={self.hidden1}, hidden2={self.hidden2}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"parts={self.parts!r}, out_channels={self.out_channels}, backend={self.backend!r}")


class RNNPool2d(_PatchSweep2d):
    """RNNPool (NeurIPS 2020): [N, C, H, W] -> [N, 4*hidden2, H', W'].

    stride=None means stride = kernel_size, as in PyTorch's pooling layers. cell is "fastgrnn"
    (gate/update nonlinearities: sigmoid, tanh, quantSigm, quantTanh) or "gru".
    """

    def __init__(self, in_channels, hidden1, hidden2, kernel_size, stride=None, padding=0, cell="fastgrnn",
                 gate="sigmoid", update="tanh", backend="auto"):
        super().__init__(in_channels, hidden1, hidden2, kernel_size, stride, padding, cell, gate, update, "RC",
                         backend)

    @classmethod
    def from_edgeml(cls, state_dict, kernel_size, stride=None, padding=0, prefix="", gate="sigmoid",
                    update="tanh", backend="auto"):
        """An RNNPool2d holding the weights of an EdgeML RNNPool state dict (docs/spec.md section 4).

        EdgeML's module takes already-unfolded patches, so the patch size and stride its model used
        must be given here. gate/update are the nonlinearities the EdgeML cells were built with.
        state_dict may be a training checkpoint ({'model': state dict, ...}, 'module.' keys).
        """
        state_dict = edgeml.unwrap_checkpoint(state_dict)
        in_channels, hidden1, hidden2 = edgeml.edgeml_rnnpool_sizes(state_dict, prefix)
        converted = edgeml.convert_rnnpool_state_dict(state_dict, prefix)
        layer = cls(in_channels, hidden1, hidden2, kernel_size, stride, padding, "fastgrnn", gate, update, backend)
        layer.to(converted["rnn1.W"].dtype).load_state_dict(converted)  # keep the checkpoint's precision
        return layer


class ReX2d(_PatchSweep2d):
    """ReX (AAAI 2022): [N, C, H, W] -> [N, 8*hidden2, H', W'], channels [V^R, V^G, V^C].

    parts selects blocks for the paper's ablations ("RC" drops V^G, ...); out_channels follows.
    """

    def __init__(self, in_channels, hidden1, hidden2, kernel_size, stride=None, padding=0, cell="gru",
                 gate="sigmoid", update="tanh", parts="RGC", backend="auto"):
        super().__init__(in_channels, hidden1, hidden2, kernel_size, stride, padding, cell, gate, update, parts,
                         backend)
