"""Resource limits: how much memory a model may ask for, checked before anything is allocated.

Owns the estimate of a tensor's size in bytes and the limit it is held to:
MEMORY_FRACTION of the machine's physical memory (os.sysconf), or of the
process's address-space limit when that is smaller. The builder asks when it
creates a parameter, an input or the result of an op, so that
`dense(x, 1000000000)` is a located error rather than a MemoryError, a swap
storm or the out-of-memory killer. Symbolic dims such as the batch `B` count
as 1 there: the size of one example, which no batch size can make smaller.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

MEMORY_FRACTION = 0.5
FALLBACK_MEMORY = 8 * 2**30  # when the machine will not say


@functools.cache
def machine_memory() -> int:
    """Bytes of physical memory, or of the address-space limit if that is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system, or it does not know
        total = FALLBACK_MEMORY
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and 0 < soft < total:
            total = soft
    except (ImportError, ValueError, OSError):
        pass
    return total if total > 0 else FALLBACK_MEMORY


def memory_limit() -> int:
    """The most bytes one tensor, or all the parameters together, may take."""
    return int(machine_memory() * MEMORY_FRACTION)


def tensor_bytes(typ) -> int:
    """Bytes of a tensor of this type, symbolic dims counted as 1 (exact Python ints: no overflow); of all
    the results of a multi-result op (a tuple type's `types`)."""
    if hasattr(typ, "types"):
        return sum(tensor_bytes(t) for t in typ.types)
    return math.prod(d for d in typ.shape if isinstance(d, int)) * np.dtype(typ.dtype).itemsize


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; up to EiB, then in powers of ten of EiB; any int, however large."""
    if n.bit_length() > 1000:  # beyond what a float holds
        return f"about 2**{n.bit_length() - 1} B"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            break
        size /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{size:.1f} {unit}" if size < 1e6 else f"{size:.2g} {unit}"


def limit_text() -> str:
    """'11.6 GiB (half of this machine's 23.3 GiB)' for messages."""
    share = "half" if MEMORY_FRACTION == 0.5 else f"{MEMORY_FRACTION:.0%}"
    return f"{format_bytes(memory_limit())} ({share} of this machine's {format_bytes(machine_memory())})"


def too_big(typ) -> int | None:
    """The size of a tensor of `typ` if it is over the limit, else None."""
    n = tensor_bytes(typ)
    return n if n > memory_limit() else None
