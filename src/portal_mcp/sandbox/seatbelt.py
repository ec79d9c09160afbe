"""macOS Seatbelt for a sandbox worker: the profile `sandbox-exec` would apply, entered with `sandbox_init`.

`sandbox-exec -p PROFILE cmd` is a thin wrapper around `sandbox_init(PROFILE, 0, &error)` from libSystem;
browsers and coding agents confine their helpers with the same call. A worker calls it on itself after it has
imported everything (the fork server preloads) and before it reads any agent code, like Landlock and seccomp on
Linux. The profile denies everything by default: no file may be opened or written, no socket connected or
bound, no process started or signalled but itself; descriptors opened before (the channel) keep working.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

from portal_mcp.sandbox.confine_base import LayerUnavailable

__all__ = ["PROFILE", "enter_seatbelt"]

PROFILE: Final = """(version 1)
(deny default)
(allow signal (target self))
(allow sysctl-read)
(allow mach-lookup (global-name "com.apple.system.opendirectoryd.libinfo"))
"""


def enter_seatbelt() -> tuple[str, ...]:
    """Apply `PROFILE` to this process for good (macOS only)."""
    if sys.platform != "darwin":
        raise LayerUnavailable("Seatbelt exists on macOS only")
    try:
        library = ctypes.CDLL(None)
        sandbox_init = library.sandbox_init
    except (OSError, AttributeError) as exc:
        raise LayerUnavailable(f"sandbox_init is not available: {exc}") from None
    sandbox_init.argtypes = (ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_char_p))
    sandbox_init.restype = ctypes.c_int
    error = ctypes.c_char_p()
    if sandbox_init(PROFILE.encode(), 0, ctypes.byref(error)) != 0:
        reason = error.value.decode(errors="replace") if error.value else "unknown error"
        raise LayerUnavailable(f"sandbox_init refused the profile: {reason}")
    return ("network", "filesystem writes", "filesystem reads", "new processes", "other processes")
