"""Give large freed buffers back to the operating system (glibc), so one big email leaves no lasting RSS.

glibc serves big allocations with mmap and returns them on free, but after the first such free it
raises its mmap threshold to that size (up to 32 MB): from then on a 25 MB email's copies come from the
heap and stay in the process after they are freed (measured here: +60 MB kept after one 25 MB mail).
A fixed threshold turns that adjustment off. No-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024  # buffers of 1 MB and more are mapped, and unmapped when freed


def return_large_buffers_to_os(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """True when the C library took the setting (glibc); also the parse workers' pool initializer."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused; memory of big emails may stay allocated")
    return ok
