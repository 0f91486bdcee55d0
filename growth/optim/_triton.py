"""When DessiLBI takes its fused (Triton) step; Triton is imported only where it could run.

``growth`` never needs Triton: on the CPU ``fused=None`` does not even try to
import it, and ``fused=True`` without it is a clear error. The kernels are in
:mod:`growth.optim._fused_dessilbi`.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType

import torch
from torch import Tensor

INSTALL_HINT = "install Triton (pip install 'netgrow[gpu]'; CUDA builds of torch usually include it)"


@functools.cache
def fused_kernels() -> ModuleType | None:
    """:mod:`growth.optim._fused_dessilbi`, or None where Triton does not import."""
    try:
        from growth.optim import _fused_dessilbi
    except ImportError:
        return None
    return _fused_dessilbi


def default_to_fused(params: Sequence[Tensor]) -> bool:
    """``fused=None``: the fused step for CUDA parameters when Triton imports, like torch.optim's defaults.

    CPU parameters keep the multi-tensor path: the kernels run on the CPU only in
    Triton's (slow) interpreter, which ``fused=True`` can still ask for.
    """
    if torch.jit.is_scripting() or not params or any(p.device.type != "cuda" for p in params):
        return False
    kernels = fused_kernels()
    return kernels is not None and kernels.fused_supported(params)


def check_fused_request(params: Sequence[Tensor]) -> None:
    """Raise a RuntimeError saying why ``fused=True`` cannot step ``params`` here, if it cannot."""
    kernels = fused_kernels()
    if kernels is None:
        raise RuntimeError(f"DessiLBI(fused=True) needs Triton, which does not import here: {INSTALL_HINT}")
    if not kernels.fused_supported(params):
        where = ("CPU tensors (TRITON_INTERPRET=1 is set)" if kernels.interpreting()
                 else "CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before Triton is imported)")
        found = sorted({f"{p.device.type} {p.dtype}" for p in params})
        raise RuntimeError(f"DessiLBI(fused=True) steps {where} of dtype float32, bfloat16 or float16; "
                           f"got {', '.join(found)}")
