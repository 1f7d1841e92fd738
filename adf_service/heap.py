"""How this process's C heap hands memory back to the kernel (no torch here: the CLI calls it at start)."""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_freed_memory_in_heap"]


def keep_freed_memory_in_heap() -> None:
    """Stop glibc from handing freed blocks back to the kernel after every training step.

    On VMs that reclaim free guest memory eagerly (DAMON here), every re-faulted page is
    expensive: CPU training steps were measured 10–100× slower (a 4 s search epoch took
    160 s). Serving blocks up to 32 MiB from the heap (glibc's maximum) and never trimming
    it avoids that, at the cost of keeping the process's peak heap. Linux/glibc only; a
    no-op elsewhere. Called by the CLI, the benchmarks and the test suite.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 2**30)
