"""The gated-skip convolution's forward as one Triton kernel (the CUDA backend; runs on CPU tensors under
TRITON_INTERPRET=1 for tests).

Each program owns a tile of one sample: BLOCK_CO output channels of one group by BLOCK_P pixels. A
tile whose gates m[n, c] are all 0 only copies x; otherwise it runs the direct convolution for the
tile, reading the filters of its active channels only (a gated-off channel's rows multiply zeros and
its output is a copy of x), applies alpha * conv + beta, the activation and the blend, and stores y.
"""

import triton
import triton.language as tl


@triton.jit
def _gated_skip_conv2d_kernel(
    x_ptr, w_ptr, alpha_ptr, beta_ptr, gate_ptr, y_ptr,
    C, H, W, channels_per_group, co_tiles_per_group,
    KH: tl.constexpr, KW: tl.constexpr, DIL_H: tl.constexpr, DIL_W: tl.constexpr,
    RELU: tl.constexpr, ACC_F64: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_P: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    co_tile = tl.program_id(1)
    group = co_tile // co_tiles_per_group
    co_in_group = (co_tile % co_tiles_per_group) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    co_ok = co_in_group < channels_per_group
    co = group * channels_per_group + co_in_group
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    plane = H * W
    p_ok = p < plane
    oh = p // W
    ow = p % W

    tile_ok = co_ok[:, None] & p_ok[None, :]
    offsets = (n * C + co)[:, None] * plane + p[None, :]
    x_self = tl.load(x_ptr + offsets, mask=tile_ok, other=0.0)
    m = tl.load(gate_ptr + n * C + co, mask=co_ok, other=0.0)
    active = m != 0
    if tl.sum(active.to(tl.int32), axis=0) > 0:
        if ACC_F64:
            acc = tl.zeros((BLOCK_CO, BLOCK_P), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_CO, BLOCK_P), dtype=tl.float32)
        for ci in range(0, channels_per_group):
            x_plane = x_ptr + (n * C + group * channels_per_group + ci) * plane
            for kh in tl.static_range(KH):
                ih = oh + (kh * DIL_H - (KH - 1) // 2 * DIL_H)
                for kw in tl.static_range(KW):
                    iw = ow + (kw * DIL_W - (KW - 1) // 2 * DIL_W)
                    inside = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                    xv = tl.load(x_plane + ih * W + iw, mask=inside, other=0.0)
                    # Gated-off channels' filters are never read.
                    wv = tl.load(w_ptr + ((co * channels_per_group + ci) * KH + kh) * KW + kw,
                                 mask=co_ok & active, other=0.0)
                    acc += wv.to(acc.dtype)[:, None] * xv.to(acc.dtype)[None, :]
        alpha = tl.load(alpha_ptr + co, mask=co_ok, other=0.0).to(acc.dtype)
        beta = tl.load(beta_ptr + co, mask=co_ok, other=0.0).to(acc.dtype)
        z = acc * alpha[:, None] + beta[:, None]
        if RELU:
            z = tl.where(z < 0, 0.0, z)  # NaN stays NaN, as in the reference
        mm = m.to(acc.dtype)[:, None]
        blended = mm * z + (1 - mm) * x_self.to(acc.dtype)
        y = tl.where(active[:, None], blended.to(x_self.dtype), x_self)
        tl.store(y_ptr + offsets, y, mask=tile_ok)
    else:
        tl.store(y_ptr + offsets, x_self, mask=tile_ok)


def gated_skip_conv2d_forward(x, weight, alpha, beta, gate, dilation, relu, block_p=128):
    """y for contiguous x [N, C, H, W], weight [C, C/groups, kh, kw], alpha/beta [C], gate m [N, C]."""
    n, c, h, w = x.shape
    channels_per_group = weight.shape[1]
    groups = c // channels_per_group
    block_co = min(16, triton.next_power_of_2(channels_per_group))
    block_p = min(block_p, triton.next_power_of_2(h * w))
    co_tiles_per_group = triton.cdiv(channels_per_group, block_co)
    y = x.new_empty(x.shape)
    if y.numel() == 0:
        return y
    grid = (n, groups * co_tiles_per_group, triton.cdiv(h * w, block_p))
    _gated_skip_conv2d_kernel[grid](
        x, weight, alpha, beta, gate, y,
        c, h, w, channels_per_group, co_tiles_per_group,
        KH=weight.shape[2], KW=weight.shape[3], DIL_H=dilation[0], DIL_W=dilation[1],
        RELU=relu, ACC_F64=x.dtype.itemsize == 8, BLOCK_CO=block_co, BLOCK_P=block_p,
    )
    return y
