"""Discretized logistic mixtures over 0..255: a float loss for training and exact
integer frequencies for the entropy coder.

The head predicts, per subpixel and per component k: a mixture logit (nats), a mean
offset from the context anchor (levels) and a log-scale (ln levels), all on a 1/16
grid. For coding, probabilities must be bit-identical on every machine, and exp and
sigmoid are not (they differ by an ulp between CPU and CUDA). So frequencies come from
fixed integer tables and int32 arithmetic only:

    cdf_k(edge)  = SIGMOID[(edge - mu_k) * INV_SCALE[log_scale_k] >> 10]   in [0, 2^15]
    freq(x)      = sum_k EXP[max_logit - logit_k] * (cdf_k(x + 1/2) - cdf_k(x - 1/2)) + 1

The "+ 1" gives every symbol some mass, and the end bins take the tails (as in
PixelCNN++). ``exact_frequencies`` returns int32 (N, 256); ``nll`` is the float version
used in training. The tables are built with float64 once, rounded to integers, and
their hash is part of the model identity, so a change would be caught.

The binary coding path (``coder.encode_binary``) never needs a whole row, only the
cumulative frequency F(x) = sum_{v < x} freq(v) at a few points per subpixel.
``mixture_cdf`` evaluates exactly that, from the same tables and integer steps, at
O(M) cost per point instead of O(256 M) per row. Since freq telescopes, F(x) =
C(x - 1/2) + x with C(e) = sum_k EXP[..] cdf_k(e): the "+ 1" floor adds x, C(-1/2) = 0
and C(255.5) = sum_k EXP[..] 2^15 (the row total less 256) because the end bins take the
tails. So F(0) = 0, F(256) = the row sum, and F(b) - F(a) is exactly the mass of a..b-1.
The coder calls the parts: ``mixture_terms`` once per chunk (per component: inverse
scale, weight, and a base folding in the mean, (M, N) so the work runs along contiguous
rows), then ``cdf_from_terms`` at interior points and ``row_totals`` for F(256). The base
is clamped where the sigmoid index saturates anyway, so everything runs in int32 for any
offset; the table is read with index_select (~5x faster than indexing on CPU).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from . import jit

GRID = 16                       # head outputs are integers in units of 1/16
LOG_SCALE_MIN, LOG_SCALE_MAX = -3 * GRID, 6 * GRID   # s in [e^-3, e^6] levels
SIG_BITS, SIG_STEPS, SIG_RANGE = 15, 64, 20          # cdf in [0, 2^15], z on a 1/64 grid, |z| <= 20
IDX_MAX = SIG_RANGE * SIG_STEPS
EXP_BITS, EXP_SPAN = 12, 16 * GRID                   # weights 2^12 * exp(-d/16), d <= 256
N_SYMBOLS = 256
# The float loss mirrors the "+1" floor: a symbol never costs more than ~29 bits.
FLOOR = 1.0 / 2 ** 29


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ls = np.arange(LOG_SCALE_MIN, LOG_SCALE_MAX + 1, dtype=np.float64) / GRID
    inv_scale = np.round(2.0 ** 12 * np.exp(-ls)).astype(np.int32)          # 4/s on a 2^-10 grid
    z = (np.arange(-IDX_MAX, IDX_MAX, dtype=np.float64) + 0.5) / SIG_STEPS
    sigmoid = np.round(2.0 ** SIG_BITS / (1.0 + np.exp(-z))).astype(np.int32)
    exp = np.round(2.0 ** EXP_BITS * np.exp(-np.arange(EXP_SPAN + 1) / GRID)).astype(np.int32)
    return inv_scale, sigmoid, exp


INV_SCALE, SIGMOID, EXP = _tables()
TABLES_HASH = hashlib.sha256(INV_SCALE.tobytes() + SIGMOID.tobytes() + EXP.tobytes()).hexdigest()
_EDGES16 = torch.arange(N_SYMBOLS - 1, dtype=torch.int32) * GRID + GRID // 2   # x + 1/2, in 1/16


def split_params(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3, M) -> logits, mean offsets, log scales, each (..., M)."""
    return params[..., 0, :], params[..., 1, :], params[..., 2, :]


def nll(params: torch.Tensor, anchor: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood in nats of integer targets under the float mixture.

    params: (..., 3, M) real head outputs (logit, mean offset, log-scale); anchor, target:
    (...) integers 0..255. Returns (...) float32.
    """
    logit, offset, log_scale = split_params(params)
    log_scale = log_scale.clamp(LOG_SCALE_MIN / GRID, LOG_SCALE_MAX / GRID)
    mean = anchor.unsqueeze(-1).float() + offset
    x = target.unsqueeze(-1).float()
    inv_s = torch.exp(-log_scale)
    upper = torch.where(x > N_SYMBOLS - 1.5, torch.ones_like(x), torch.sigmoid((x + 0.5 - mean) * inv_s))
    lower = torch.where(x < 0.5, torch.zeros_like(x), torch.sigmoid((x - 0.5 - mean) * inv_s))
    weights = F.softmax(logit, dim=-1)
    p = (weights * (upper - lower).clamp(min=0)).sum(-1)
    return -torch.log(p * (1 - N_SYMBOLS * FLOOR) + FLOOR)


_TABLES: dict[str, tuple[torch.Tensor, ...]] = {}


def _device_tables(device: torch.device) -> tuple[torch.Tensor, ...]:
    key = str(device)
    if key not in _TABLES:
        _TABLES[key] = (torch.as_tensor(INV_SCALE, device=device).long(), torch.as_tensor(SIGMOID, device=device),
                        torch.as_tensor(EXP, device=device).long(), _EDGES16.to(device).long())
    return _TABLES[key]


def exact_frequencies(params: torch.Tensor, anchor: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Integer symbol frequencies from integer head outputs.

    params: (N, 3, M) integer-valued tensor (any dtype) in units of 1/16; anchor: (N,)
    integers 0..255. Returns (N, 256) int32, every entry >= 1, sum < 2^31.

    The mixture is summed over cdfs first (sum_k w_k cdf_k) and differenced once; integer
    arithmetic makes that identical to summing the per-component masses. Everything runs
    in int32, which holds every intermediate: |edge - mu| <= 8183 (mu16 = 16 anchor + offset,
    offsets within the head's +-4095) times INV_SCALE <= 82,335 stays below 6.8e8 < 2^31, and
    sum_k w_k cdf_k < M 2^12 2^15 = 2^29. Rows are done in blocks (1,024 on CPU) so the
    (block, M, 255) temporaries stay in cache; int32 instead of int64 halves their traffic.
    """
    device = params.device
    if device.type == "cpu" and jit.available() and block is None:      # one compiled pass, the same integers
        from . import coder_jit
        return torch.from_numpy(coder_jit.frequencies(params.numpy(), anchor.numpy()))
    inv_t, sig_t, exp_t, edges = _device_tables(device)
    p = params.to(torch.int32)
    logit, offset, log_scale = split_params(p)
    mu16 = anchor.to(torch.int32).unsqueeze(-1) * GRID + offset                              # (N, M)
    inv = inv_t[(log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX) - LOG_SCALE_MIN).long()].to(torch.int32)
    w = exp_t[(logit.amax(-1, keepdim=True) - logit).clamp(max=EXP_SPAN).long()].to(torch.int32)
    total = w.sum(1, dtype=torch.int32) << SIG_BITS                                          # (N,) < 2^31
    n = len(p)
    out = torch.empty(n, N_SYMBOLS, dtype=torch.int32, device=device)
    edges32 = edges.to(torch.int32).view(1, 1, -1)
    block = block or (1024 if device.type == "cpu" else 1 << 16)
    for i in range(0, n, block):
        j = min(n, i + block)
        idx = (edges32 - mu16[i:j].unsqueeze(-1)).mul_(inv[i:j].unsqueeze(-1))               # (b, M, 255)
        idx = idx.bitwise_right_shift_(10).clamp_(-IDX_MAX, IDX_MAX - 1).add_(IDX_MAX)
        cdf = sig_t.index_select(0, idx.view(-1)).view(idx.shape)          # ~5x faster than sig_t[idx] on CPU
        c = cdf.mul_(w[i:j].unsqueeze(-1)).sum(1, dtype=torch.int32)                            # (b, 255) < 2^29
        o = out[i:j]
        o[:, 0] = c[:, 0]
        torch.sub(c[:, 1:], c[:, :-1], out=o[:, 1:N_SYMBOLS - 1])
        o[:, N_SYMBOLS - 1] = total[i:j] - c[:, -1]
    return out.add_(1)


ALL_VALUES = torch.ones(1, 256, dtype=torch.int32)       # the mask table of "every value allowed"


def apply_mask(freq: torch.Tensor, table: torch.Tensor, row: np.ndarray) -> torch.Tensor:
    """freq (n, 256) times row ``row[j]`` of the 0/1 ``table`` (R, 256): the frequencies of the
    values each variable may take (constraint.Constraint.mask_rows). A row left empty (only
    possible when decoding a damaged stream) keeps its frequencies, so decoding stays defined
    and the pixel checksum reports the damage."""
    if freq.device.type == "cpu" and freq.dtype == torch.int32 and jit.available():   # one compiled pass
        from . import coder_jit
        return torch.from_numpy(coder_jit.masked(freq.contiguous().numpy(), table.numpy(), row))
    out = freq * table[torch.from_numpy(row).to(freq.device)]
    empty = out.sum(1) == 0
    if bool(empty.any()):
        out[empty] = freq[empty]
    return out


def frequencies_to_probabilities(freq: torch.Tensor) -> np.ndarray:
    """int32 (N, 256) -> C-contiguous float64 probabilities, by one IEEE division each.

    Every step here is exact or correctly rounded, so identical frequencies give identical
    bytes for the coder on every machine.
    """
    if freq.device.type == "cpu" and freq.dim() == 2 and jit.available():      # one compiled pass
        from . import coder_jit
        return coder_jit.probabilities(freq.contiguous().numpy())
    f = freq.cpu().numpy().astype(np.float64)
    return np.ascontiguousarray(f / f.sum(axis=1, keepdims=True))


def bits_of(freq: torch.Tensor, symbols: torch.Tensor) -> float:
    """Ideal code length in bits of ``symbols`` under integer frequencies (for reporting)."""
    f = freq.double()
    chosen = f.gather(1, symbols.long().view(-1, 1)).squeeze(1)
    return float((torch.log2(f.sum(1)) - torch.log2(chosen)).sum())


def mixture_terms(params: torch.Tensor, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-component integer terms of N mixtures for ``cdf_from_terms``, each int32 (M, N):
    table inverse scales, a base folding in the mean, and EXP weights, as in
    ``exact_frequencies``. Select variables with ``t[:, rows]``."""
    inv_t, _, exp_t, _ = _device_tables(params.device)
    logit, offset, log_scale = params.to(torch.int64).permute(1, 2, 0).contiguous()     # each (M, N)
    inv = inv_t.index_select(0, (log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX) - LOG_SCALE_MIN).view(-1))
    w = exp_t.index_select(0, (logit.amax(0, keepdim=True) - logit).clamp(max=EXP_SPAN).view(-1))
    inv, w = inv.view(logit.shape), w.view(logit.shape)
    # The sigmoid index, before its floor shift and clamp, is (edge - mu) * inv + 2^10 IDX_MAX
    # = edge * inv + base. |edge * inv| < 4088 * 82,335 < 2^29, so beyond |base| = 2^30 the
    # index is clamped for every edge: clamping base there changes nothing, and keeps the
    # sum under 2^31 for any offset. int32 from here on.
    base = ((IDX_MAX << 10) - (anchor.to(torch.int64) * GRID + offset) * inv).clamp_(-2 ** 30, 2 ** 30)
    return inv.to(torch.int32), base.to(torch.int32), w.to(torch.int32)


def cdf_from_terms(terms: tuple[torch.Tensor, ...], points: torch.Tensor) -> torch.Tensor:
    """F at interior points from ``mixture_terms``: points (k, N) in 1..255 (points-major;
    F(0) = 0 and F(256) = ``row_totals``). Returns int32 (k, N) (row sums are < 2^31)."""
    inv, base, w = terms
    _, sig_t, _, _ = _device_tables(inv.device)
    x = points.to(torch.int32).contiguous()
    edge = x * GRID - GRID // 2                                                    # x - 1/2, in 1/16
    # Adding 2^10 IDX_MAX (in base) before the floor shift adds exactly IDX_MAX after it: the
    # same table index as exact_frequencies', already offset to 0 .. 2 IDX_MAX - 1.
    idx = (edge.unsqueeze(0) * inv.unsqueeze(1)).add_(base.unsqueeze(1))           # (M, k, N)
    idx = idx.bitwise_right_shift_(10).clamp_(0, 2 * IDX_MAX - 1)
    cdf = sig_t.index_select(0, idx.reshape(-1)).view(idx.shape)                   # (M, k, N)
    return cdf.mul_(w.unsqueeze(1)).sum(0, dtype=torch.int32).add_(x)             # + x: the "+ 1" floor


def row_totals(terms: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """F(256) = the row sum, int32 (N,): the end bins take the tails, so C(255.5) is the
    whole EXP-weighted mass and not the sigmoid there."""
    return (terms[2].sum(0, dtype=torch.int32) << SIG_BITS) + N_SYMBOLS


def mixture_cdf(params: torch.Tensor, anchor: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Cumulative integer frequencies F(x) = sum_{v < x} exact_frequencies(params, anchor)[:, v].

    params: (N, 3, M) integer-valued, as for ``exact_frequencies``; anchor: (N,) 0..255;
    points: (N, k) int64 in 0..256, on the same device. Returns int64 (N, k): F(0) = 0,
    F(256) = the row sum, O(N k M) work and no host synchronisation.
    """
    return cdf_at(mixture_terms(params, anchor), points.T).T.contiguous().long()


def cdf_at(terms: tuple[torch.Tensor, ...], points: torch.Tensor) -> torch.Tensor:
    """F at any points (k, N) in 0..256 from ``mixture_terms``: int32 (k, N), F(0) = 0 and
    F(256) = ``row_totals`` at the ends, ``cdf_from_terms`` between."""
    inner = cdf_from_terms(terms, points.clamp(1, N_SYMBOLS - 1))
    return torch.where(points <= 0, 0, torch.where(points >= N_SYMBOLS, row_totals(terms), inner))


assert math.isclose(float(EXP[0]), 2 ** EXP_BITS)
