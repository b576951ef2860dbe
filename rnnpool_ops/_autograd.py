"""Autograd for the fused ops, first order only, refusing what it cannot compute.

torch.library.register_autograd alone gets two things silently wrong for ops whose backward is
another custom op without a derivative: differentiating the gradient (torch.autograd.grad(...,
create_graph=True) and then backward) drops the second-order term, and forward-mode AD
(torch.func.jvp, torch.autograd.forward_ad dual tensors) returns zero tangents. The kernel
registered here takes the same backward and setup_context and instead raises, naming the op:
  - NotImplementedError at the call, for forward-mode AD;
  - NotImplementedError at the call, for torch.func's other transforms (grad, vjp, vmap), which
    torch could not run on the op before either, with a message that says so;
  - RuntimeError when the backward's result is differentiated (double backward). Computing a
    gradient with create_graph=True still works; only differentiating it again raises.
"""

import torch
import torch.autograd.forward_ad as forward_ad
from torch._C import _functorch

FORWARD_AD_UNSUPPORTED = (
    "{op}: forward-mode AD (torch.func.jvp, jacfwd, torch.autograd.forward_ad dual tensors) is not supported: "
    "the op has a reverse-mode gradient only. Use backward / torch.autograd.grad, or backend='reference'"
)
FUNC_TRANSFORMS_UNSUPPORTED = (
    "{op}: torch.func transforms (grad, vjp, jacrev, vmap) are not supported; use backward / "
    "torch.autograd.grad (torch.autograd.functional.jacobian for a Jacobian), or backend='reference'"
)
DOUBLE_BACKWARD_UNSUPPORTED = (
    "{op}: double backward is not supported: its gradients (from {backward}) are first order only and "
    "cannot be differentiated again (create_graph=True and then backward, or a higher-order derivative). "
    "Use backend='reference' for higher-order derivatives"
)


def _flatten(args):
    """The tensors of the op's arguments (tensor lists flattened) and the structure to rebuild them."""
    flat, structure = [], []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            structure.append(None)
            flat.append(arg)
        elif isinstance(arg, (list, tuple)) and arg and all(isinstance(t, torch.Tensor) for t in arg):
            structure.append(len(arg))
            flat.extend(arg)
        else:
            structure.append(("constant", arg))
    return flat, structure


def _unflatten(flat, structure):
    args, at = [], 0
    for entry in structure:
        if entry is None:
            args.append(flat[at])
            at += 1
        elif isinstance(entry, int):
            args.append(list(flat[at : at + entry]))
            at += entry
        else:
            args.append(entry[1])
    return args


def _flatten_grads(grads, structure):
    """The backward's result (one entry per op argument, lists for tensor lists) as one flat tuple."""
    flat = []
    for grad, entry in zip(grads, structure):
        if entry is None:
            flat.append(grad)
        elif isinstance(entry, int):
            flat.extend([None] * entry if grad is None else grad)
    return flat


class _RefuseBackward(torch.autograd.Function):
    """Identity on the backward's results, made to depend on what they are a function of (the
    grad_output and the saved inputs that require grad), when they are part of a graph
    (create_graph=True): differentiating them raises the op's error instead of silently dropping
    the second-order term."""

    @staticmethod
    def forward(message, count, *tensors):
        return tuple(t.view_as(t) for t in tensors[:count])

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.message = inputs[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(ctx.message)


def _first_order(grads, depends_on, message):
    """grads (a flat list with Nones) unchanged, or through _RefuseBackward when grad mode is on
    (create_graph=True) and they depend on something that requires grad."""
    present = [i for i, g in enumerate(grads) if g is not None]
    depends_on = [t for t in depends_on if isinstance(t, torch.Tensor) and t.requires_grad]
    if not torch.is_grad_enabled() or not present or not depends_on:
        return grads
    refused = _RefuseBackward.apply(message, len(present), *(grads[i] for i in present), *depends_on)
    grads = list(grads)
    for i, g in zip(present, refused):
        grads[i] = g
    return grads


def register_first_order_autograd(op_name, backward, setup_context, backward_name):
    """Autograd for the op `op_name` ("namespace::name", overload "default"), with
    torch.library.register_autograd's backward(ctx, grad_output) and setup_context(ctx, inputs,
    output): the same first-order gradients, and clear errors for what the op cannot do (see the
    module docstring). backward_name names the op the backward calls, for the error."""
    namespace, name = op_name.split("::")
    op = getattr(getattr(torch.ops, namespace), name).default
    forward_ad_message = FORWARD_AD_UNSUPPORTED.format(op=op_name)
    transforms_message = FUNC_TRANSFORMS_UNSUPPORTED.format(op=op_name)
    double_message = DOUBLE_BACKWARD_UNSUPPORTED.format(op=op_name, backward=backward_name)

    def redispatch(keyset, args):
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    class Generated(torch.autograd.Function):
        @staticmethod
        def forward(keyset, structure, *flat):
            return redispatch(keyset, _unflatten(flat, structure))

        @staticmethod
        def setup_context(ctx, inputs, output):
            _, structure, *flat = inputs
            ctx.structure = structure
            setup_context(ctx, _unflatten(flat, structure), output)

        @staticmethod
        def backward(ctx, grad_output):
            structure = ctx.structure
            needs = ctx.needs_input_grad
            depends_on = (grad_output, *ctx.saved_tensors)
            try:
                # The op's view: one entry per argument (a list for a tensor list, False for a constant).
                ctx.needs_input_grad = tuple(
                    _unflatten(list(needs[2:]), [e if e is None or isinstance(e, int) else ("constant", False)
                                                 for e in structure]))
                with torch.no_grad():
                    grads = backward(ctx, grad_output)
            finally:
                ctx.needs_input_grad = needs
            flat = _flatten_grads(grads, structure)
            return (None, None, *_first_order(flat, depends_on, double_message))

        @staticmethod
        def jvp(ctx, *tangents):  # reached only if the check in the kernel below is bypassed
            raise NotImplementedError(forward_ad_message)

    def autograd_kernel(keyset, *args):
        flat, structure = _flatten(args)
        if any(forward_ad.unpack_dual(t).tangent is not None for t in flat):
            raise NotImplementedError(forward_ad_message)
        if any(_functorch.is_gradtrackingtensor(t) or _functorch.is_batchedtensor(t) for t in flat):
            raise NotImplementedError(transforms_message)
        if torch.is_grad_enabled() and any(t.requires_grad for t in flat):
            return Generated.apply(keyset, structure, *flat)
        return redispatch(keyset, args)

    library = torch.library.Library(namespace, "IMPL")
    library.impl(name, autograd_kernel, "Autograd", with_keyset=True)
    _LIBRARIES.append(library)  # a Library's registrations last as long as the object


_LIBRARIES = []
