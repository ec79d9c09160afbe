"""OS confinement of a sandbox worker: rlimits, then every kernel layer this machine offers.

`confine()` runs in the worker after it is forked (or spawned) and before it reads any agent code. The rlimits
always apply. The kernel layers are each tried on their own, and one the kernel refuses is reported, never
fatal, so the sandbox works everywhere and is as strong as the machine allows:

| mechanism    | needs                                   | gives                                                  |
|--------------|-----------------------------------------|--------------------------------------------------------|
| netns        | root, or unprivileged user namespaces   | an empty network namespace (no interface is up)        |
| capabilities | (only meaningful as root)               | root without capabilities: no ptrace/environ of others |
| landlock     | Linux >= 5.13 with Landlock enabled     | no file may be opened at all (read or write), no TCP   |
|              |                                         | (ABI 4), no signals or abstract sockets out (ABI 6)    |
| seccomp      | x86-64 Linux (`seccomp.py`)             | no socket/fork/exec/ptrace/mount/..., no write opens,  |
|              |                                         | signals only to itself, no raising its own rlimits     |
| seatbelt     | macOS (`seatbelt.py`, `sandbox_init`)   | no file opened, no network, no process or signal out   |

Without the `resource` module (Windows) there are no rlimits: the run still has the host's wall clock.

Order matters: the event loop (which opens a socketpair) exists before this runs; the network namespace is
made while capabilities remain; Landlock and seccomp come last because they forbid what the earlier steps
use. Only the standard library and `ctypes` are used: the worker must not need anything installed.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import platform
import signal
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from portal_mcp.sandbox.confine_base import LayerUnavailable, c_library, check, no_new_privs
from portal_mcp.sandbox.seatbelt import enter_seatbelt
from portal_mcp.sandbox.seccomp import install_seccomp, prepare_seccomp, seccomp_program

try:
    import resource
except ImportError:  # Windows: no rlimits
    resource: Any = None  # type: ignore[no-redef]

__all__ = [
    "LAYERS",
    "Confinement",
    "LayerUnavailable",
    "apply_rlimits",
    "c_library",
    "confine",
    "drop_capabilities",
    "enter_seatbelt",
    "install_seccomp",
    "isolate_network",
    "prepare_seccomp",
    "restrict_filesystem",
    "seccomp_program",
]


# What each layer keeps the code from doing, in the order they are reported.
LAYERS: Final = ("network", "filesystem writes", "filesystem reads", "new processes", "other processes")


@dataclass
class Confinement:
    """Which mechanisms enforce each layer in this worker, and why the missing ones are missing."""

    layers: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in LAYERS})
    unavailable: list[str] = field(default_factory=list)

    def add(self, mechanism: str, *layers: str) -> None:
        for layer in layers:
            self.layers[layer].append(mechanism)


def confine(memory_mb: int, cpu_seconds: float, *, netns: Callable[[], tuple[str, ...]] | None = None) -> Confinement:
    """Apply the rlimits and every available kernel layer to this process; report what is in force.

    `netns` replaces `isolate_network` when the parent already made the namespace: the fork server does, once,
    and its workers share that empty namespace (a namespace per worker costs ~0.5 ms of the worker's start and
    more in the kernel's asynchronous teardown; seccomp and Landlock keep workers from opening sockets at all).
    """
    report = Confinement()
    if resource is None:
        report.unavailable.append(f"rlimit: {sys.platform} has no rlimits (the wall clock still stops the run)")
    else:
        apply_rlimits(memory_mb, cpu_seconds)
        report.add("rlimit", "filesystem writes")
        if os.geteuid() != 0:  # root ignores RLIMIT_NPROC
            report.add("rlimit", "new processes")
    # Each platform's own mechanisms (a missing one is reported); elsewhere the Linux ones say why they are absent.
    steps: tuple[tuple[str, Callable[[], tuple[str, ...]]], ...] = (
        (("seatbelt", enter_seatbelt),)
        if sys.platform == "darwin"
        else (
            ("netns", netns or isolate_network),
            ("capabilities", drop_capabilities),
            ("landlock", restrict_filesystem),
            ("seccomp", install_seccomp),
        )
    )
    for mechanism, step in steps:
        try:
            report.add(mechanism, *step())
        except LayerUnavailable as exc:
            report.unavailable.append(f"{mechanism}: {exc}")
    return report


# --- rlimits ---


def _lower(limit: int, value: int) -> None:
    _, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(limit, (value, value))


def apply_rlimits(memory_mb: int, cpu_seconds: float) -> None:
    """Address space, CPU time, file size 0, 32 open files, no core dumps, no processes (non-root)."""
    _lower(resource.RLIMIT_CORE, 0)
    _lower(resource.RLIMIT_FSIZE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file write fails with EFBIG instead of killing us
    _lower(resource.RLIMIT_NOFILE, 32)
    _lower(resource.RLIMIT_NPROC, 0)
    cpu = max(1, math.ceil(cpu_seconds))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    # Soft limit: SIGXCPU terminates us (the host reports "CPU limit"); hard limit one second later: SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if hard == resource.RLIM_INFINITY else min(cpu + 1, hard)))
    _lower(resource.RLIMIT_AS, memory_mb * 2**20)


# --- network namespace ---

_CLONE_NEWNET: Final = 0x40000000
_CLONE_NEWUSER: Final = 0x10000000


def isolate_network() -> tuple[str, ...]:
    """Move into a fresh, empty network namespace (as root; otherwise through a user namespace)."""
    if platform.system() != "Linux":
        raise LayerUnavailable("network namespaces exist on Linux only")
    libc = c_library()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return ("network",)
    first = ctypes.get_errno()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return ("network",)
    second = ctypes.get_errno()
    raise LayerUnavailable(
        f"unshare(CLONE_NEWNET) failed: {errno.errorcode.get(first, first)}; with a user namespace: "
        f"{errno.errorcode.get(second, second)}"
    )


# --- capabilities ---


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522


def drop_capabilities() -> tuple[str, ...]:
    """Clear every capability: root stays uid 0 but can no longer ptrace, read others' memory or environment."""
    if platform.system() != "Linux":
        raise LayerUnavailable("capabilities exist on Linux only")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(c_library().capset(ctypes.byref(header), data), "capset")
    return ("other processes",) if os.geteuid() == 0 else ()


# --- Landlock ---

_SYS_LANDLOCK_CREATE_RULESET: Final = 444  # the same number on every architecture
_SYS_LANDLOCK_RESTRICT_SELF: Final = 446
_LANDLOCK_CREATE_RULESET_VERSION: Final = 1


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel; LayerUnavailable when it has none."""
    if platform.system() != "Linux":
        raise LayerUnavailable("Landlock exists on Linux only")
    return check(
        c_library().syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            ctypes.c_void_p(None),
            ctypes.c_size_t(0),
            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
        ),
        "landlock_create_ruleset (kernel without Landlock, or Landlock not enabled at boot)",
    )


def restrict_filesystem() -> tuple[str, ...]:
    """A Landlock domain that handles every access right and allows none: no path can be opened any more.

    Descriptors opened before (the channel, /dev/null) keep working. On ABI 4+ TCP bind/connect are denied
    too, and on ABI 6+ signals and abstract UNIX sockets cannot leave the domain.
    """
    abi = landlock_abi()
    fs = (1 << 13) - 1  # ABI 1: execute, write, read, readdir, remove/make dir, file, char, sock, fifo, block, sym
    fs |= (1 << 13) if abi >= 2 else 0  # refer
    fs |= (1 << 14) if abi >= 3 else 0  # truncate
    fs |= (1 << 15) if abi >= 5 else 0  # ioctl on devices
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0  # abstract UNIX sockets, signals
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = ctypes.create_string_buffer(struct.pack("<QQQ", fs, net, scoped)[:size], size)
    libc = c_library()
    ruleset = check(
        libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), attr, ctypes.c_size_t(size), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )
    try:
        no_new_privs()
        check(
            libc.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)
    layers = ["filesystem writes", "filesystem reads"]
    if net:
        layers.append("network")
    if scoped:
        layers.append("other processes")
    return tuple(layers)
