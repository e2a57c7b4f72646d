"""Quantized convolutions: fake-quant for training, exact integer arithmetic for coding.

Integer networks (Balle, Johnston & Minnen, ICLR 2019): activations are integers with
a fixed number of fractional bits ``a`` (real = int / 2^a), weights are integers in
[-127, 127] with a per-output-channel power-of-two scale 2^-j. A layer computes

    acc = sum(W_int * x_int) + b_int            (exact: every partial sum < 2^24)
    out = clamp(floor(acc * 2^-s), lo, hi)      s = j + a_in - a_out

in float32. Multiplying by a power of two and flooring are exact, and an addition of
integers whose partial sums stay below 2^24 is exact in any order, so the result is
bit-identical for any thread count, batch, crop, BLAS or device. ``QConv.export``
checks that bound on the real weights (max|x| * L1(W_c) + |b_c| < 2^24) and refuses to
export otherwise. The rounding constant 2^(s-1) is folded into the bias.

During training the same arithmetic is simulated in float with straight-through
rounding (``mode="qat"``), or skipped (``mode="float"``, with the same clamps).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import jit

W_MAX = 127
EXACT_LIMIT = 2 ** 24


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 0.5) forwards, identity backwards."""
    return x + (torch.floor(x + 0.5) - x).detach()


def weight_shift(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel j such that |w| * 2^j <= 127 uses the range well. (Cout,) int64."""
    peak = w.detach().abs().flatten(1).amax(1).clamp(min=1e-8)
    return torch.floor(torch.log2(W_MAX / peak)).clamp(0, 24).to(torch.int64)


class QConv(nn.Module):
    """A conv layer with integer semantics; see the module docstring."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1,
                 a_in: int = 4, a_out: int = 4, lo: int = -127, hi: int = 127):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.a_in, self.a_out, self.lo, self.hi = a_in, a_out, lo, hi
        self.mode = "float"
        self.bf16 = False       # training only: products in bfloat16 (see set_bf16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: real-valued activations on the 2^-a_in grid. Returns real values on 2^-a_out."""
        w, b = self.conv.weight, self.conv.bias
        scale_out = 2.0 ** self.a_out
        if self.mode == "qat":
            j = (2.0 ** weight_shift(w)).to(w.dtype)
            w = round_ste(w * j.view(-1, 1, 1, 1)).clamp(-W_MAX, W_MAX) / j.view(-1, 1, 1, 1)
            jb = j * 2.0 ** self.a_in
            b = round_ste(b * jb) / jb
        if self.bf16:
            y = F.conv2d(x.to(torch.bfloat16), w.to(torch.bfloat16), None, padding=self.conv.padding,
                         dilation=self.conv.dilation).float() + b.view(-1, 1, 1)
        else:
            y = F.conv2d(x, w, b, padding=self.conv.padding, dilation=self.conv.dilation)
        y = y * scale_out
        if self.mode == "qat":
            y = round_ste(y)
        return y.clamp(self.lo, self.hi) / scale_out

    @torch.no_grad()
    def export(self, max_in: int) -> "IntConv":
        """Integer parameters of this layer, checked for exactness given |x_int| <= max_in."""
        w = self.conv.weight.float()
        j = weight_shift(w)
        w_int = torch.round(w * (2.0 ** j).view(-1, 1, 1, 1)).clamp(-W_MAX, W_MAX)
        b_int = torch.round(self.conv.bias.float() * 2.0 ** (j + self.a_in))
        shift = j + self.a_in - self.a_out
        b_int = b_int + torch.where(shift > 0, 2.0 ** (shift - 1).clamp(min=0), torch.zeros_like(b_int))
        bound = max_in * w_int.abs().flatten(1).sum(1) + b_int.abs()
        if bool((bound >= EXACT_LIMIT).any()):
            raise ValueError(f"layer not exact: partial sums may reach {int(bound.max())} >= 2^24")
        return IntConv(w_int.contiguous(), b_int.contiguous(), (2.0 ** (-shift)).float(),
                       self.conv.padding[0], self.conv.dilation[0], self.lo, self.hi)


def set_bf16(module: nn.Module, on: bool) -> None:
    """Training speed: the 3x3 QConvs under ``module`` (nearly all of the multiply-adds)
    multiply in bfloat16: 2x faster forward and backward on CPUs with AVX512-BF16. In "qat"
    mode their int8 weights and clamped int8 activations are exact in bfloat16; only the
    sums come back rounded to 8 significant bits before the activation grid's rounding, a
    small noise next to the straight-through estimate. 1x1 layers (the stem reads integer
    features beyond bfloat16's exact range) stay float32. Coding never uses it."""
    for m in module.modules():
        if isinstance(m, QConv):
            m.bf16 = on and m.conv.kernel_size[0] > 1


def set_mode(module: nn.Module, mode: str) -> None:
    """Put every QConv under ``module`` in 'float' (clamped float training) or 'qat' mode
    (fake-quant, the same arithmetic as export)."""
    for m in module.modules():
        if isinstance(m, QConv):
            m.mode = mode


@dataclass
class IntConv:
    """Integer conv parameters stored as float32 tensors holding exact integers."""
    weight: torch.Tensor     # (Cout, Cin, k, k) integers in [-127, 127]
    bias: torch.Tensor       # (Cout,) integers, rounding constant included
    scale: torch.Tensor      # (Cout,) powers of two: 2^-shift
    padding: int
    dilation: int
    lo: int
    hi: int
    # The caller promises inputs in [0, 127] (a ReLU of a residual stream clamped to
    # [-127, 127]): on CPU the layer may then run as oneDNN's int8 convolution
    # (OneDNNConv) or an int8 GEMM (int8_conv2d), the same integers.
    small_input: bool = False
    _gemm: "OneDNNConv | Int8Weights | bool | None" = field(default=None, repr=False, compare=False)   # False: none
    _rows8: "Int8Weights | bool | None" = field(default=None, repr=False, compare=False)   # ``linear_int8``'s

    def to(self, device: torch.device) -> "IntConv":
        weight = self.weight.to(device)
        if weight.device.type == "cpu":      # oneDNN's native layout (~20% faster convs, same sums)
            weight = weight.contiguous(memory_format=torch.channels_last)
        return replace(self, weight=weight, bias=self.bias.to(device), scale=self.scale.to(device), _gemm=None,
                       _rows8=None)

    def __deepcopy__(self, memo: dict) -> "IntConv":
        """A copy without the cached fast path: derived from the weights (which a copy may
        change), and oneDNN's prepacked weights cannot be deep-copied."""
        return replace(self, weight=self.weight.clone(), bias=self.bias.clone(), scale=self.scale.clone(), _gemm=None,
                       _rows8=None)

    def with_small_input(self) -> "IntConv":
        """This layer, marked as fed integers in [0, 127] (see ``small_input``)."""
        return replace(self, small_input=True, _gemm=None, _rows8=None)

    def shift(self) -> torch.Tensor:
        """(Cout,) int64 s with scale = 2^-s (what a model file stores)."""
        return torch.round(-torch.log2(self.scale.cpu())).to(torch.int64)

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int] | None = None) -> torch.Tensor:
        """x: (B, Cin, H, W) float32 integers. Returns (B, Cout, H, W) float32 integers.
        ``padding``: (rows, columns) instead of the layer's own (a band whose rows above and
        below are already in ``x``)."""
        padding = self.padding if padding is None else padding
        fast = self._fast_path(x)
        if isinstance(fast, OneDNNConv):
            return fast(x, padding).floor_().clamp_(self.lo, self.hi)
        if isinstance(fast, Int8Weights):
            return int8_conv2d(x, fast, padding, self.dilation, self.lo, self.hi)
        return self._finish(exact_conv2d(x, self.weight, padding, self.dilation, self.bias))

    def _finish(self, acc: torch.Tensor) -> torch.Tensor:
        """clamp(floor(acc * scale), lo, hi) of the float32 accumulators, in place: a power-of-two
        scale and floor are exact, and fresh tensors cost time."""
        return acc.mul_(self.scale.view(1, -1, 1, 1)).floor_().clamp_(self.lo, self.hi)

    def relu_conv(self, x: torch.Tensor, padding: int | tuple[int, int] | None = None) -> torch.Tensor:
        """``self(relu(x), padding)`` for x holding integers in [-127, 127] (a clamped residual
        stream; the layer must be ``small_input``). On oneDNN's path the ReLU is taken on an
        int8 copy, whose non-negative bytes are already the unsigned input: one pass over
        float32 instead of two."""
        padding = self.padding if padding is None else padding
        fast = self._fast_path(x)
        if isinstance(fast, OneDNNConv):
            qx = x.to(torch.int8).clamp_(min=0).view(torch.uint8)
            return fast(qx, padding).floor_().clamp_(self.lo, self.hi)
        return self(x.clamp(min=0), padding)

    def into_int8(self, x: torch.Tensor, out: torch.Tensor, relu_out: torch.Tensor) -> None:
        """``self(x)`` into int8 ``out`` and its ReLU into ``relu_out`` (the int8 stream's first
        layer, whose lo, hi lie within int8). On the CPU with the compiled kernels the scale,
        floor, clamp, conversion and ReLU are one pass over the accumulators, not five."""
        acc = exact_conv2d(x, self.weight, self.padding, self.dilation, self.bias)
        flat = [t.permute(0, 2, 3, 1) for t in (acc, out)]        # (B, H, W, C) views
        rows = jit.pitched(relu_out) if acc.device.type == "cpu" and jit.available() else None
        if rows is not None and acc.shape == out.shape == relu_out.shape and all(t.is_contiguous() for t in flat):
            c, w = acc.shape[1], acc.shape[3]
            relu, _, pitch = rows            # (relu_out's rows may carry zero columns: ``jit.pitched``)
            jit.scaled_floor_relu_int8(flat[0].reshape(-1, c).numpy(), self.scale.numpy(), self.lo, self.hi,
                                       flat[1].view(-1, c).numpy(), relu.reshape(-1, c), w, pitch // c)
            return
        out.copy_(self._finish(acc))
        torch.clamp(out, min=0, out=relu_out)

    def int8_output(self) -> bool:
        """Whether ``int8_floor`` runs here: a CPU layer on oneDNN's int8 convolution whose int8
        output was found exact on this machine (OneDNNConv.of, once)."""
        if self.weight.device.type != "cpu":
            return False
        fast = self._fast_path(self.weight.new_empty(0))
        return isinstance(fast, OneDNNConv) and fast.floor_bias is not None

    def int8_floor(self, x: torch.Tensor, padding: int | tuple[int, int] | None = None) -> torch.Tensor:
        """clamp(floor((conv(x) + b) 2^-s), -128, 127) as int8 for x holding integers in [0, 127]:
        this layer before its own clamp, saturated to int8 (OneDNNConv.int8_floor). Only where
        ``int8_output()``."""
        return self._gemm.int8_floor(x, self.padding if padding is None else padding)

    def _fast_path(self, x: torch.Tensor) -> "OneDNNConv | Int8Weights | None":
        """The CPU int8 path this layer runs on (chosen and checked once), None for none."""
        if not (self.small_input and x.device.type == "cpu"):
            return None
        if self._gemm is None:
            self._gemm = ((OneDNNConv.of(self) if ONEDNN_QCONV else None)
                          or (Int8Weights.of(self) if INT8_GEMM and int8_gemm_pays() else None) or False)
        return self._gemm or None

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 layer applied to per-pixel rows: (N, Cin) -> (N, Cout), same arithmetic."""
        acc = exact_linear(x, self.weight.flatten(1)) + self.bias
        return torch.floor(acc * self.scale).clamp_(self.lo, self.hi)

    def linear_int8(self, x: torch.Tensor) -> torch.Tensor | None:
        """``linear`` of int8 rows (N, Cin) as an int8 GEMM (torch._int_mm; exact integers):
        int32 (N, Cout), or None where that does not run (not a 1x1 layer on the CPU, no
        int8 GEMM or a slower one than float32's, a scale above 1, 16 rows or fewer)."""
        if self._rows8 is None:
            w = self.weight
            ok = INT8_GEMM and w.device.type == "cpu" and w.shape[2:] == (1, 1) and w.shape[1] % 8 == 0
            gemm = Int8Weights.of(self) if ok else None
            if gemm is not None and gemm.matrix.shape[1] % 8:        # _int_mm wants Cout % 8 == 0: zero columns
                pad = 8 - gemm.matrix.shape[1] % 8
                gemm = replace(gemm, matrix=F.pad(gemm.matrix, (0, pad)).contiguous())
            self._rows8 = gemm or False
        if not self._rows8 or x.dtype != torch.int8 or x.device.type != "cpu" or len(x) <= 16 \
                or not int8_gemm_pays():
            return None
        gemm, cout = self._rows8, self.weight.shape[0]
        acc = torch._int_mm(x.contiguous(), gemm.matrix)[:, :cout]
        # floor((acc + b) 2^-s) = (acc + b) >> s: the integers of ``linear``
        return acc.add_(gemm.bias).bitwise_right_shift_(gemm.shift).clamp_(self.lo, self.hi)


@contextlib.contextmanager
def full_fp32():
    """Float32 arithmetic with no reduced-precision shortcuts (TF32 on CUDA, bf16 on oneDNN
    when a user lowered ``torch.set_float32_matmul_precision``), restored afterwards."""
    prev = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(prev[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev[1], prev[2]


def exact_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T for integer-valued float32 under the 2^24 bound: exact in any summation order."""
    with full_fp32():
        return x @ w.t()


def exact_conv2d(x: torch.Tensor, w: torch.Tensor, padding: int | tuple[int, int], dilation: int,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d (+ integer bias) of integer-valued float32 tensors whose partial sums, bias
    included, stay below 2^24.

    On CPU this is F.conv2d (oneDNN's direct algorithm: only products and additions, exact
    under the bound in any order; tests compare it with float64 and across threads, batch
    and crops). On CUDA, cuDNN may pick Winograd or FFT algorithms that round, so we use
    im2col + a float32 GEMM with TF32 off.
    """
    with full_fp32():
        if x.device.type == "cpu":
            return F.conv2d(x, w, bias, padding=padding, dilation=dilation)
        acc = _conv2d_gemm(x, w, padding, dilation)
        return acc if bias is None else acc.add_(bias.view(1, -1, 1, 1))


def _conv2d_gemm(x: torch.Tensor, w: torch.Tensor, padding: int, dilation: int) -> torch.Tensor:
    b, _, h, wd = x.shape
    k = w.shape[-1]
    cols = F.unfold(x, k, dilation=dilation, padding=padding)          # (B, Cin*k*k, H*W)
    return torch.matmul(w.flatten(1), cols).view(b, -1, h, wd)         # (B, Cout, H, W)


# torch._int_mm (int8 x int8 -> int32) on CPU: every product and sum is an exact integer,
# so the result equals the float32 convolution under the 2^24 bound, bit for bit, in any
# order and thread count. ~1.5x faster per 48-channel 3x3 layer than oneDNN's float32
# direct convolution on the project VM (AVX-512 VNNI), im2col and conversions included.


def _int8_gemm_works() -> bool:
    """Whether this torch has a CPU int8 GEMM that gives exact int32 products (torch._int_mm
    is private: older versions lack it or its CPU kernel, so probe once, never assume)."""
    try:
        a = torch.arange(-64, 64, dtype=torch.int8).view(32, 4).repeat(1, 8)        # (32, 32)
        b = torch.arange(-128, 128, 2, dtype=torch.int8).view(32, 4)                # (32, 4)
        return bool(torch.equal(torch._int_mm(a, b), a.to(torch.int32) @ b.to(torch.int32)))
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False


INT8_GEMM = _int8_gemm_works()
INT8_GEMM_PAYS: bool | None = None      # decided on first use (int8_gemm_pays); tests may set it


def int8_gemm_pays() -> bool:
    """Whether torch._int_mm beats a float32 matrix product on this CPU (timed once per
    process on a head-sized product, best of three each). Both give the same integers, so
    the choice changes only the time: on CPUs with VNNI or AMX the int8 GEMM is the faster
    (1.5-3x), but where torch has no fast int8 kernel for the CPU (an AVX2-only AMD EPYC:
    1.4 GMAC/s against float32's 35) it is 25x slower."""
    global INT8_GEMM_PAYS
    if INT8_GEMM_PAYS is None:
        INT8_GEMM_PAYS = INT8_GEMM and _int8_faster()
    return INT8_GEMM_PAYS


def _int8_faster(rows: int = 4096, width: int = 64) -> bool:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (rows, width), generator=g, dtype=torch.int8)
    b = torch.randint(-127, 128, (width, width), generator=g, dtype=torch.int8)
    af, bf = a.float(), b.float()

    def best(product) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            product()
            times.append(time.perf_counter() - t0)
        return min(times)
    with full_fp32():
        return best(lambda: torch._int_mm(a, b)) < best(lambda: af @ bf)


GEMM_ROWS = 1 << 15          # output pixels per GEMM: the int8 im2col block stays ~14 MB at 48 channels


@dataclass
class Int8Weights:
    """A layer's weights as an int8 GEMM operand: rows ordered (ky, kx, cin), as im2col's."""
    matrix: torch.Tensor     # (k*k*Cin, Cout) int8
    bias: torch.Tensor       # (Cout,) int32
    shift: torch.Tensor      # (Cout,) int32, >= 0: floor(acc * 2^-shift) == acc >> shift
    kernel: int

    @classmethod
    def of(cls, layer: IntConv) -> "Int8Weights | None":
        """None where the integer GEMM cannot reproduce the layer (a scale above 1)."""
        shift = layer.shift().to(torch.int32)
        if bool((shift < 0).any()):
            return None
        w = layer.weight.cpu()
        k = w.shape[-1]
        matrix = w.permute(2, 3, 1, 0).reshape(k * k * w.shape[1], w.shape[0]).to(torch.int8).contiguous()
        return cls(matrix, layer.bias.cpu().to(torch.int32), shift, k)


def int8_conv2d(x: torch.Tensor, gemm: Int8Weights, padding: int | tuple[int, int], dilation: int,
                lo: int, hi: int) -> torch.Tensor:
    """clamp(floor((conv(x, W) + b) * 2^-shift), lo, hi) for x holding integers in [-128, 127],
    as im2col + int8 GEMMs over blocks of output rows or pictures. Returns float32 (B, Cout, Ho, Wo) in
    channels-last layout (what oneDNN's path returns on CPU)."""
    pr, pc = (padding, padding) if isinstance(padding, int) else padding
    b, cin, h, w = x.shape
    k, d = gemm.kernel, dilation
    ho, wo = h + 2 * pr - d * (k - 1), w + 2 * pc - d * (k - 1)
    cout = gemm.matrix.shape[1]
    # pixels-major int8 copy of the input with its zero padding (the conversion is exact)
    src = _scratch("src", b * (h + 2 * pr) * (w + 2 * pc) * cin, torch.int8).view(b, h + 2 * pr, w + 2 * pc, cin)
    if pr or pc:
        src.zero_()
    src[:, pr:pr + h, pc:pc + w] = x.permute(0, 2, 3, 1)
    out = _scratch("acc", b * ho * wo * cout, torch.int32).view(b, ho, wo, cout)
    # blocks of whole pictures (small pictures: many per GEMM) or of rows of one picture
    per = max(1, GEMM_ROWS // max(1, ho * wo))
    rows = ho if per > 1 or ho * wo <= GEMM_ROWS else max(1, GEMM_ROWS // max(1, wo))
    for i0 in range(0, b, per):
        i1 = min(b, i0 + per)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            if k == 1:
                cols = src[i0:i1, r0:r1, :wo].reshape(-1, cin)
            else:
                cols = _scratch("cols", (i1 - i0) * (r1 - r0) * wo * k * k * cin, torch.int8).view(
                    i1 - i0, r1 - r0, wo, k * k, cin)
                for ky in range(k):
                    for kx in range(k):
                        cols[:, :, :, ky * k + kx] = src[i0:i1, r0 + ky * d:r1 + ky * d, kx * d:kx * d + wo]
                cols = cols.view(-1, k * k * cin)
            torch._int_mm(cols, gemm.matrix, out=out[i0:i1, r0:r1].view(-1, cout))   # a view: written in place
    out = out.view(-1, cout).add_(gemm.bias).bitwise_right_shift_(gemm.shift).clamp_(lo, hi)
    return out.view(b, ho, wo, cout).permute(0, 3, 1, 2).to(torch.float32)


# oneDNN's int8 convolution (the op PyTorch's x86 quantization backend lowers to): unsigned
# 8-bit activations x signed 8-bit weights summed in int32, so the same integers again,
# without int8_conv2d's im2col copies: 2-2.7x faster per 48-channel 3x3 layer here. Inputs
# stay in [0, 127] and weights in [-127, 127], so even CPUs without VNNI, whose int8 path
# adds pairs of products in saturating int16, cannot saturate (2 * 127 * 127 < 2^15).
# oneDNN may also rescale weights on such CPUs (its "scale adjust"), so each layer is
# checked against float64 on this machine before it is used (``OneDNNConv.of``).
ONEDNN_QCONV = hasattr(torch.ops, "onednn") and hasattr(torch.ops.onednn, "qconv2d_pointwise")


@dataclass
class OneDNNConv:
    """A layer as oneDNN's int8 convolution with a float32 output (acc + b) * 2^-s: the sum is
    an exact int32, and scaling and adding multiples of 2^-s below 2^24 units is exact."""
    packed: torch.Tensor      # oneDNN's prepacked int8 weights
    scale: torch.Tensor       # (Cout,) float32 2^-s
    zero_points: torch.Tensor  # (Cout,) int64 zeros
    bias: torch.Tensor        # (Cout,) float32 b * 2^-s
    dilation: int
    floor_bias: torch.Tensor | None = None   # (Cout,) float32 for ``int8_floor``; None: not exact here

    @staticmethod
    def _floor_bias(layer: IntConv) -> torch.Tensor | None:
        """b 2^-s - 1/2 + 2^-(s+1) = (2 b - 2^s + 1) 2^-(s+1), where every sum oneDNN forms
        with it, (2 (acc + b) - 2^s + 1) 2^-(s+1) for inputs in [0, 127], has a numerator
        below 2^24 (exact in float32); None where a layer's weights could leave that, or
        where a scale above 1 (s < 0) would make the rounded values ties."""
        w, b = layer.weight.cpu().double(), layer.bias.cpu().double()
        s = layer.shift().double()
        most = 127 * w.abs().sum((1, 2, 3)) + b.abs()
        if not bool(((s >= 0) & (2 * most + 2 ** s + 1 < 2 ** 24)).all()):     # (s < 0: ties)
            return None
        return ((2 * b - 2 ** s + 1) * 2 ** -(s + 1)).float()

    @classmethod
    def of(cls, layer: IntConv) -> "OneDNNConv | None":
        """None where this torch or CPU cannot run the layer exactly (checked on three inputs:
        small random, all 127, and one as large as a band, as oneDNN may pick its kernel by shape)."""
        try:
            d, k = layer.dilation, layer.weight.shape[-1]
            scale = layer.scale.cpu().float().contiguous()
            weight = layer.weight.cpu().to(torch.int8).contiguous()
            packed = torch.ops.onednn.qconv_prepack(weight, scale, 1.0, 0, [1, 1], [layer.padding] * 2, [d, d], 1, None)
            conv = cls(packed, scale, torch.zeros(len(scale), dtype=torch.int64), layer.bias.cpu().float() * scale, d)
            g = torch.Generator().manual_seed(0)
            side = d * (k - 1) + 1
            # (the band-sized one against the float32 convolution, exact under the same bound and
            # itself tested against float64, so that the check costs milliseconds)
            probes = [(torch.randint(0, 128, (2, weight.shape[1], side + 9, side + 40), generator=g), torch.float64),
                      (torch.full((1, weight.shape[1], side + 2, side + 3), 127), torch.float64),
                      (torch.randint(0, 128, (1, weight.shape[1], side + 16, 256), generator=g), torch.float32)]
            probed = []
            for x, dtype in probes:
                x = x.float().contiguous(memory_format=torch.channels_last)
                acc = exact_conv2d(x.to(dtype), layer.weight.cpu().to(dtype), layer.padding, d, layer.bias.cpu().to(dtype))
                want = acc.double() * scale.double().view(1, -1, 1, 1)
                if not torch.equal(conv(x, layer.padding).double(), want):
                    return None
                probed.append((x, want.floor().clamp(-128, 127)))
        except (RuntimeError, TypeError, AttributeError, NotImplementedError, ValueError):
            return None
        try:        # the int8 output apart: where it fails, the float32 output still serves
            conv.floor_bias = cls._floor_bias(layer)
            if conv.floor_bias is not None and not all(
                    torch.equal(conv.int8_floor(x, layer.padding).double(), want) for x, want in probed):
                conv.floor_bias = None
        except (RuntimeError, TypeError, AttributeError, NotImplementedError, ValueError):
            conv.floor_bias = None
        return conv

    def __call__(self, x: torch.Tensor, padding: int | tuple[int, int]) -> torch.Tensor:
        """x: (B, Cin, H, W) integers in [0, 127], float32 or uint8 -> (B, Cout, Ho, Wo)
        float32 (acc + b) * 2^-s, channels last."""
        pr, pc = (padding, padding) if isinstance(padding, int) else padding
        qx = x.to(torch.uint8).contiguous(memory_format=torch.channels_last)
        return torch.ops.onednn.qconv2d_pointwise(
            qx, 1.0, 0, self.packed, self.scale, self.zero_points, self.bias, [1, 1], [pr, pc],
            [self.dilation, self.dilation], 1, 1.0, 0, torch.float32, "none", [], "")


    def int8_floor(self, x: torch.Tensor, padding: int | tuple[int, int]) -> torch.Tensor:
        """clamp(floor((acc + b) 2^-s), -128, 127) as int8 (B, Cout, Ho, Wo), channels last,
        for x holding integers in [0, 127] (uint8 or any type): oneDNN's int8 output, a
        quarter of the float32 output's bytes. oneDNN rounds (acc + b) 2^-s - 1/2 + 2^-(s+1)
        (``floor_bias``) to the nearest integer and saturates: that value is never a tie (it
        lies strictly between floor - 1/2 and floor + 1/2), so any rounding to nearest gives
        the floor. Only where ``floor_bias`` is set (checked against float64 in ``of``)."""
        pr, pc = (padding, padding) if isinstance(padding, int) else padding
        qx = x.view(torch.uint8) if x.dtype == torch.int8 else x.to(torch.uint8)     # int8 0..127: same bytes
        qx = qx.contiguous(memory_format=torch.channels_last)
        return torch.ops.onednn.qconv2d_pointwise(
            qx, 1.0, 0, self.packed, self.scale, self.zero_points, self.floor_bias, [1, 1], [pr, pc],
            [self.dilation, self.dilation], 1, 1.0, 0, torch.int8, "none", [], "")


_SCRATCH = threading.local()


def _scratch(name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A reused flat buffer of at least ``numel`` elements (this thread's; contents undefined).
    Fresh multi-megabyte tensors are fresh pages from the OS on every call (glibc maps them),
    and the page faults cost more than the im2col copies themselves (0.8 ms of zeroing a
    1.6 MB band against 0.06 ms of copying into a reused one)."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != dtype:
        buf = buffers[name] = torch.empty(numel, dtype=dtype)
    return buf[:numel]
