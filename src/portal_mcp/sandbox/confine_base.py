"""What every confinement mechanism shares: the error saying one is unavailable, and the C library."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Final

__all__ = ["LayerUnavailable", "c_library", "check", "no_new_privs"]


class LayerUnavailable(Exception):
    """The kernel (or the privileges we run with) does not offer this mechanism; `str()` says why."""


_loaded: list[ctypes.CDLL] = []  # the C library, once per process (the fork server loads it for its workers)


def c_library() -> ctypes.CDLL:
    """The Linux C library already loaded into this interpreter (dlopen(NULL)): no search on disk, which Landlock
    would refuse later and `ctypes.util.find_library` does by running a compiler."""
    if not _loaded:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except (OSError, TypeError) as exc:
            raise LayerUnavailable(f"the C library cannot be loaded: {exc}") from None
        if not hasattr(libc, "prctl"):
            raise LayerUnavailable("this C library has no prctl (not Linux)")
        libc.syscall.restype = ctypes.c_long
        libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
        libc.prctl.restype = ctypes.c_int
        _loaded.append(libc)
    return _loaded[0]


def check(result: int, what: str) -> int:
    """`result` of a C call, or LayerUnavailable naming the call and its errno."""
    if result < 0:
        code = ctypes.get_errno()
        raise LayerUnavailable(f"{what} failed: {errno.errorcode.get(code, str(code))} ({os.strerror(code)})")
    return result


_PR_SET_NO_NEW_PRIVS: Final = 38


def no_new_privs() -> None:
    """No set-uid gains from here on: required before Landlock and seccomp."""
    check(c_library().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
