r"""The DessiLBI step as Triton kernels: every tensor is read once and written once.

A DessiLBI step touches five parameter-sized tensors per lifted weight (the
gradient g, the momentum buffer b, W, V and Γ). Stock PyTorch kernels need
about 16 passes over them (``_multi_tensor_dessilbi``); the kernels below read
g, b, W, V, Γ once and write b, W, V, Γ once, so 9 passes, against a fused
momentum-SGD step's 5. The maths is the reference path's
(``_single_tensor_dessilbi``)::

    d = g + weight_decay · W
    b = momentum · b + d                 (b = d on the first step; no b without momentum)
    R = W − Γ
    V ← V + (α/ν) · R
    W ← W − κα · (b + R/ν)               (W ← W − κα · b for a param that is not lifted)
    Γ ← κ · Prox_λ(V)

Two kernels, one per tensor kind, each launched over *all* tensors of its kind
in a device/dtype group (a table of addresses, like a multi-tensor apply):

- ``_filter_step_kernel``: lifted conv weights (``ndim >= 3``), one program per
  output filter, so the filter's ‖V_g‖₂ for the group prox is a reduction
  inside the program. A filter that fits in one block stays in registers
  (9 passes); a longer one is walked twice (the second walk re-reads V to
  write Γ: 10 passes). One launch per block size.
- ``_elementwise_step_kernel``: lifted linear weights (``ndim == 2``,
  element-wise soft threshold at λ) and every parameter that is not lifted
  (plain momentum SGD at κα), one program per block of elements.

Magnitude scaling (eqs. 14–15) needs per-layer counts over the whole tensor
before V moves, so it is not fused: :class:`~growth.optim.dessilbi.DessiLBI`
routes groups with ``magnitude_scaling=True`` to its multi-tensor path, and
:func:`fused_dessilbi` refuses them.

Arithmetic is float32 for float32, bfloat16 and float16 parameters (state has
the parameter's dtype). With ``TRITON_INTERPRET=1`` in the environment before
Triton is first imported (torch imports it too, e.g. when an optimizer is
built), Triton's interpreter runs the same kernels on CPU tensors; that is how
the tests check them against the float64 reference. (The interpreter rounds
float32 → bfloat16 towards zero where a GPU rounds to nearest.)

This module imports ``triton``: import it lazily (``growth`` never needs Triton).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["FUSED_DTYPES", "fused_dessilbi", "fused_supported", "interpreting"]

FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The group prox divides by max(‖V_g‖, NORM_FLOOR) (growth.optim.prox.NORM_FLOOR): zero groups give 0, not NaN.
NORM_FLOOR = tl.constexpr(1e-12)
# A filter up to this many weights is processed in one block, in registers (VGG16's widest: 512·3·3 = 4608).
MAX_SINGLE_BLOCK = 8192
# Longer filters are walked in blocks of this size.
LOOP_BLOCK = 2048
ELEMENTWISE_BLOCK = 1024

# Columns of the per-tensor table (int64): addresses of g, b, W, V, Γ, then the length
# (filter size K or numel), the first program of the tensor, and whether it is lifted.
_GRAD, _BUF, _W, _V, _GAMMA, _LENGTH, _START, _LIFTED = range(8)
_COLUMNS = 8

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def _load_pointer(table, row, column: tl.constexpr, DTYPE: tl.constexpr):
    return tl.load(table + row * 8 + column).to(tl.pointer_type(DTYPE))


@triton.jit
def _momentum_direction(g_ptr, b_ptr, w, offs, mask, momentum, weight_decay,
                        DTYPE: tl.constexpr, HAS_MOMENTUM: tl.constexpr):
    """d = g + wd·W, then b ← momentum·b + d (stored); returns the direction W moves along."""
    d = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32) + weight_decay * w
    if HAS_MOMENTUM:
        b = momentum * tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32) + d
        tl.store(b_ptr + offs, b.to(DTYPE), mask=mask)
        d = b
    return d


@triton.jit
def _filter_step_kernel(
    table,            # int64 [n_tensors, 8]
    program_tensor,   # int32 [n_programs]: which tensor each program's filter belongs to
    lr_kappa,         # κα
    v_step,           # α/ν
    inv_nu,           # 1/ν
    lam,
    kappa,
    momentum,
    weight_decay,
    DTYPE: tl.constexpr,
    HAS_MOMENTUM: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE_BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(program_tensor + pid)
    g_ptr = _load_pointer(table, t, 0, DTYPE)
    b_ptr = _load_pointer(table, t, 1, DTYPE)
    w_ptr = _load_pointer(table, t, 2, DTYPE)
    v_ptr = _load_pointer(table, t, 3, DTYPE)
    c_ptr = _load_pointer(table, t, 4, DTYPE)
    k = tl.load(table + t * 8 + 5)
    row = pid - tl.load(table + t * 8 + 6)
    base = row.to(tl.int64) * k
    cols = tl.arange(0, BLOCK)

    if SINGLE_BLOCK:
        offs = base + cols
        mask = cols < k
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        d = _momentum_direction(g_ptr, b_ptr, w, offs, mask, momentum, weight_decay, DTYPE, HAS_MOMENTUM)
        r = w - tl.load(c_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32) + v_step * r
        v_stored = v.to(DTYPE)
        tl.store(v_ptr + offs, v_stored, mask=mask)
        tl.store(w_ptr + offs, (w - lr_kappa * (d + r * inv_nu)).to(DTYPE), mask=mask)
        v = v_stored.to(tl.float32)  # Γ is the prox of V as stored
        norm = tl.sqrt(tl.sum(v * v, axis=0))
        factor = kappa * tl.maximum(1.0 - lam / tl.maximum(norm, NORM_FLOOR), 0.0)
        tl.store(c_ptr + offs, (v * factor).to(DTYPE), mask=mask)
    else:
        squares = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, k, BLOCK):
            offs = base + start + cols
            mask = start + cols < k
            w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            d = _momentum_direction(g_ptr, b_ptr, w, offs, mask, momentum, weight_decay, DTYPE, HAS_MOMENTUM)
            r = w - tl.load(c_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            v = (tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32) + v_step * r).to(DTYPE)
            tl.store(v_ptr + offs, v, mask=mask)
            tl.store(w_ptr + offs, (w - lr_kappa * (d + r * inv_nu)).to(DTYPE), mask=mask)
            v = v.to(tl.float32)
            squares += v * v
        norm = tl.sqrt(tl.sum(squares, axis=0))
        factor = kappa * tl.maximum(1.0 - lam / tl.maximum(norm, NORM_FLOOR), 0.0)
        for start in range(0, k, BLOCK):
            offs = base + start + cols
            mask = start + cols < k
            v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(c_ptr + offs, (v * factor).to(DTYPE), mask=mask)


@triton.jit
def _elementwise_step_kernel(
    table,
    program_tensor,
    lr_kappa,
    v_step,
    inv_nu,
    lam,
    kappa,
    momentum,
    weight_decay,
    DTYPE: tl.constexpr,
    HAS_MOMENTUM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(program_tensor + pid)
    g_ptr = _load_pointer(table, t, 0, DTYPE)
    b_ptr = _load_pointer(table, t, 1, DTYPE)
    w_ptr = _load_pointer(table, t, 2, DTYPE)
    n = tl.load(table + t * 8 + 5)
    block = pid - tl.load(table + t * 8 + 6)
    lifted = tl.load(table + t * 8 + 7)
    idx = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n

    w = tl.load(w_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    d = _momentum_direction(g_ptr, b_ptr, w, idx, mask, momentum, weight_decay, DTYPE, HAS_MOMENTUM)
    if lifted != 0:
        v_ptr = _load_pointer(table, t, 3, DTYPE)
        c_ptr = _load_pointer(table, t, 4, DTYPE)
        r = w - tl.load(c_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        v = (tl.load(v_ptr + idx, mask=mask, other=0.0).to(tl.float32) + v_step * r).to(DTYPE)
        tl.store(v_ptr + idx, v, mask=mask)
        tl.store(w_ptr + idx, (w - lr_kappa * (d + r * inv_nu)).to(DTYPE), mask=mask)
        v = v.to(tl.float32)
        # κ·sign(V)·max(|V| − λ, 0) = κ·(V − clamp(V, −λ, λ))
        shrunk = v - tl.minimum(tl.maximum(v, -lam), lam)
        tl.store(c_ptr + idx, (kappa * shrunk).to(DTYPE), mask=mask)
    else:
        tl.store(w_ptr + idx, (w - lr_kappa * d).to(DTYPE), mask=mask)


def interpreting() -> bool:
    """Whether these kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return not isinstance(_elementwise_step_kernel, triton.runtime.jit.JITFunction)


def fused_supported(params: Sequence[Tensor]) -> bool:
    """Whether :func:`fused_dessilbi` can step ``params``: CUDA (CPU under the interpreter), fp32/bf16/fp16."""
    device_ok = ("cpu",) if interpreting() else ("cuda",)
    return all(p.device.type in device_ok and p.dtype in FUSED_DTYPES for p in params)


def fused_dessilbi(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    vs: list[Tensor | None],
    gammas: list[Tensor | None],
    *,
    lr: float,
    kappa: float,
    nu: float,
    lam: float,
    momentum: float,
    weight_decay: float,
    magnitude_scaling: bool = False,
) -> None:
    """The DessiLBI step of ``growth.optim.dessilbi.dessilbi`` in Triton kernels, in place.

    Same lists as the reference: ``vs[i]``/``gammas[i]`` are None for parameters
    that are not lifted; ``momentum_buffers`` entries that are None start at the
    step's direction (created here, in the list). A lifted parameter's grouping
    follows ``growth.optim.prox.is_grouped``: one group per output filter for
    ``ndim >= 3``, element-wise for ``ndim == 2``; a lifted parameter must have
    ``ndim >= 2``.
    """
    if magnitude_scaling:
        raise ValueError("the fused DessiLBI kernels do not implement magnitude scaling; "
                         "DessiLBI(..., fused=None) routes such param groups to the foreach path")
    if not params:
        return
    if not fused_supported(params):
        where = "CPU tensors under TRITON_INTERPRET=1" if interpreting() else "CUDA tensors"
        found = sorted({f"{p.device.type}/{p.dtype}" for p in params})
        raise RuntimeError(f"fused DessiLBI steps {where} of dtype float32, bfloat16 or float16; got {found}")
    has_momentum = momentum != 0
    if has_momentum:
        for i, buf in enumerate(momentum_buffers):
            if buf is None:  # momentum·0 + d = d exactly: the first step's b = d
                momentum_buffers[i] = torch.zeros_like(params[i], memory_format=torch.preserve_format)

    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        if p.numel():
            groups.setdefault((p.device, p.dtype), []).append(i)
    scalars = tuple(float(x) for x in (kappa * lr, lr / nu, 1.0 / nu, lam, kappa, momentum, weight_decay))
    for (device, dtype), indices in groups.items():
        rows = [_Row(params[i], _matching(grads[i], params[i]), momentum_buffers[i], vs[i], gammas[i])
                for i in indices]
        by_block: dict[int, list[_Row]] = {}
        elementwise: list[_Row] = []
        for row in rows:
            if row.lifted and row.w.ndim >= 3:
                by_block.setdefault(_filter_block(row.w), []).append(row)
            else:
                elementwise.append(row)
        for block, chosen in sorted(by_block.items()):
            _launch_filter_kernel(chosen, device, dtype, block, has_momentum, scalars)
        if elementwise:
            _launch_elementwise_kernel(elementwise, device, dtype, has_momentum, scalars)


class _Row:
    """One parameter with its gradient and state, checked to share one memory layout."""

    __slots__ = ("w", "g", "b", "v", "gamma", "lifted")

    def __init__(self, w: Tensor, g: Tensor, b: Tensor | None, v: Tensor | None, gamma: Tensor | None) -> None:
        if (v is None) != (gamma is None):
            raise ValueError("V and Γ are both given (a lifted parameter) or both None")
        self.w, self.g, self.b, self.v, self.gamma = w, g, b, v, gamma
        self.lifted = v is not None
        if self.lifted and w.ndim < 2:
            raise ValueError(f"only weights with ndim >= 2 are lifted, got shape {tuple(w.shape)}")
        if not _dense(w):
            raise ValueError(f"the fused DessiLBI step needs dense parameters; got strides {w.stride()} "
                             f"for shape {tuple(w.shape)}")
        if self.lifted and w.ndim >= 3 and w.shape[0] > 1 and w.stride(0) != w.numel() // w.shape[0]:
            raise ValueError(f"a conv weight's output filters must each be one block of memory for the fused "
                             f"step (dim 0 outermost); got strides {w.stride()} for shape {tuple(w.shape)}")
        for name, t in (("momentum_buffer", b), ("v", v), ("gamma", gamma)):
            if t is not None and (not _same_layout(t, w) or t.dtype != w.dtype or t.device != w.device):
                raise ValueError(
                    f"DessiLBI state {name!r} (shape {tuple(t.shape)}, strides {t.stride()}, {t.dtype}) must have "
                    f"its parameter's shape, strides and dtype ({tuple(w.shape)}, {w.stride()}, {w.dtype}) for "
                    "the fused step; resize and convert state with growth.surgery")

    def addresses(self) -> list[int]:
        w = self.w.data_ptr()
        b = self.b.data_ptr() if self.b is not None else 0
        v = self.v.data_ptr() if self.v is not None else 0
        gamma = self.gamma.data_ptr() if self.gamma is not None else 0
        return [self.g.data_ptr(), b, w, v, gamma]


def _dense(t: Tensor) -> bool:
    """Whether ``t``'s elements fill one block of memory, each once (a permutation of a contiguous layout)."""
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _same_layout(a: Tensor, b: Tensor) -> bool:
    """Same shape, and element i of the one is at the same offset as element i of the other."""
    return a.shape == b.shape and all(sa == sb for sa, sb, n in zip(a.stride(), b.stride(), a.shape) if n > 1)


def _matching(grad: Tensor, param: Tensor) -> Tensor:
    """``grad`` laid out like ``param`` (autograd usually does so already)."""
    if grad.shape != param.shape:
        raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter of shape {tuple(param.shape)}")
    if _same_layout(grad, param) and grad.dtype == param.dtype:
        return grad
    return torch.empty_like(param, memory_format=torch.preserve_format).copy_(grad)


def _filter_block(w: Tensor) -> int:
    k = w.numel() // w.shape[0]
    if k <= MAX_SINGLE_BLOCK:
        return max(16, triton.next_power_of_2(k))
    return -LOOP_BLOCK  # negative: the looping variant, sorted apart from the single-block sizes


def _table(rows: list[_Row], lengths: list[int], programs: list[int], device: torch.device) -> Tensor:
    values: list[int] = []
    start = 0
    for row, length, count in zip(rows, lengths, programs, strict=True):
        values.extend(row.addresses())
        values.extend((length, start, int(row.lifted)))
        start += count
    return _device_table(tuple(values), device)


@functools.lru_cache(maxsize=32)
def _device_table(values: tuple[int, ...], device: torch.device) -> Tensor:
    """The int64 table on ``device``; in steady state the caching allocator hands back the same
    addresses every step, so the copy to the device happens once, not per step."""
    return _to_device(torch.tensor(values, dtype=torch.int64), device)


def _to_device(table: Tensor, device: torch.device) -> Tensor:
    if device.type == "cpu":
        return table
    # Pinned + non_blocking: a pageable copy would wait for the backward pass still running on the stream.
    return table.pin_memory().to(device, non_blocking=True)


@functools.lru_cache(maxsize=64)
def _program_tensor(programs: tuple[int, ...], device: torch.device) -> Tensor:
    """int32 [Σ programs]: tensor index of every program; depends on shapes only, so cached."""
    counts = torch.tensor(programs, dtype=torch.int64)
    index = torch.repeat_interleave(torch.arange(len(programs), dtype=torch.int32), counts)
    return _to_device(index, device)


def _launch_filter_kernel(rows: list[_Row], device: torch.device, dtype: torch.dtype, block: int,
                          has_momentum: bool, scalars: tuple[float, ...]) -> None:
    single = block > 0
    block = abs(block)
    lengths = [row.w.numel() // row.w.shape[0] for row in rows]
    programs = [row.w.shape[0] for row in rows]
    table = _table(rows, lengths, programs, device)
    owner = _program_tensor(tuple(programs), device)
    _filter_step_kernel[(len(owner),)](
        table, owner, *scalars,
        DTYPE=_TL_DTYPES[dtype], HAS_MOMENTUM=has_momentum, BLOCK=block, SINGLE_BLOCK=single,
        num_warps=_warps(block),
    )


def _launch_elementwise_kernel(rows: list[_Row], device: torch.device, dtype: torch.dtype,
                               has_momentum: bool, scalars: tuple[float, ...]) -> None:
    lengths = [row.w.numel() for row in rows]
    programs = [triton.cdiv(n, ELEMENTWISE_BLOCK) for n in lengths]
    table = _table(rows, lengths, programs, device)
    owner = _program_tensor(tuple(programs), device)
    _elementwise_step_kernel[(len(owner),)](
        table, owner, *scalars,
        DTYPE=_TL_DTYPES[dtype], HAS_MOMENTUM=has_momentum, BLOCK=ELEMENTWISE_BLOCK,
        num_warps=_warps(ELEMENTWISE_BLOCK),
    )


def _warps(block: int) -> int:
    # ~256 elements per warp, so a block's five operands stay in registers.
    return min(16, max(1, block // 256))

