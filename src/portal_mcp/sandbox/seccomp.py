"""The seccomp filter of a sandbox worker (x86-64 Linux): system calls a confined worker never needs, denied.

Denied calls fail with an errno (never a kill), so the code sees an ordinary OSError. `confine.confine` installs
it last, after Landlock; the fork server builds the program once (`prepare_seccomp`) and each worker only writes
its own pid into it (signals may go only to itself).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from typing import Final

from portal_mcp.sandbox.confine_base import LayerUnavailable, c_library, check, no_new_privs

__all__ = ["install_seccomp", "prepare_seccomp", "seccomp_program"]

_PR_SET_SECCOMP: Final = 22
_SECCOMP_MODE_FILTER: Final = 2


_AUDIT_ARCH_X86_64: Final = 0xC000003E
_X32_SYSCALL_BIT: Final = 0x40000000
_RET_KILL_PROCESS: Final = 0x80000000
_RET_ALLOW: Final = 0x7FFF0000
_RET_ERRNO: Final = 0x00050000
_LD_ABS_W: Final = 0x20
_JEQ: Final = 0x15
_JGE: Final = 0x35
_JSET: Final = 0x45
_RET: Final = 0x06

# x86-64 system call numbers denied outright, with the errno they fail with. ENOSYS where libc falls back
# to an older call that is filtered by its arguments (openat2 -> openat) or denied anyway (clone3 -> clone).
_DENIED_X86_64: Final[dict[int, int]] = {
    # network
    41: errno.EPERM, 53: errno.EPERM, 42: errno.EPERM, 49: errno.EPERM, 50: errno.EPERM,  # socket(pair) connect bind listen
    43: errno.EPERM, 288: errno.EPERM,  # accept, accept4
    # new processes
    56: errno.EPERM, 57: errno.EPERM, 58: errno.EPERM, 435: errno.ENOSYS,  # clone fork vfork clone3
    59: errno.EPERM, 322: errno.EPERM,  # execve execveat
    # other processes
    101: errno.EPERM, 310: errno.EPERM, 311: errno.EPERM, 312: errno.EPERM,  # ptrace process_vm_* kcmp
    434: errno.EPERM, 438: errno.EPERM, 424: errno.EPERM, 440: errno.EPERM,  # pidfd_* process_madvise
    129: errno.EPERM, 297: errno.EPERM,  # rt_(tg)sigqueueinfo
    # its own limits and the kernel's attack surface
    160: errno.EPERM, 302: errno.EPERM,  # setrlimit prlimit64
    165: errno.EPERM, 166: errno.EPERM, 155: errno.EPERM, 161: errno.EPERM,  # mount umount2 pivot_root chroot
    272: errno.EPERM, 308: errno.EPERM,  # unshare setns
    428: errno.EPERM, 429: errno.EPERM, 430: errno.EPERM, 431: errno.EPERM, 432: errno.EPERM,  # new mount API
    433: errno.EPERM, 442: errno.EPERM,
    321: errno.EPERM, 298: errno.EPERM, 323: errno.EPERM,  # bpf perf_event_open userfaultfd
    425: errno.EPERM, 426: errno.EPERM, 427: errno.EPERM,  # io_uring (its file operations bypass seccomp)
    248: errno.EPERM, 249: errno.EPERM, 250: errno.EPERM,  # add_key request_key keyctl
    175: errno.EPERM, 313: errno.EPERM, 176: errno.EPERM,  # modules
    246: errno.EPERM, 320: errno.EPERM, 169: errno.EPERM,  # kexec reboot
    167: errno.EPERM, 168: errno.EPERM, 163: errno.EPERM, 172: errno.EPERM, 173: errno.EPERM,  # swap acct iopl ioperm
    303: errno.EPERM, 304: errno.EPERM, 135: errno.EPERM,  # name_to_handle_at open_by_handle_at personality
    # filesystem writes
    85: errno.EPERM, 437: errno.ENOSYS,  # creat openat2
    83: errno.EPERM, 258: errno.EPERM, 84: errno.EPERM, 87: errno.EPERM, 263: errno.EPERM,  # mkdir rmdir unlink
    82: errno.EPERM, 264: errno.EPERM, 316: errno.EPERM,  # rename*
    86: errno.EPERM, 265: errno.EPERM, 88: errno.EPERM, 266: errno.EPERM,  # link symlink
    90: errno.EPERM, 91: errno.EPERM, 268: errno.EPERM, 452: errno.EPERM,  # chmod
    92: errno.EPERM, 93: errno.EPERM, 94: errno.EPERM, 260: errno.EPERM,  # chown
    76: errno.EPERM, 77: errno.EPERM, 133: errno.EPERM, 259: errno.EPERM,  # truncate mknod
    132: errno.EPERM, 235: errno.EPERM, 280: errno.EPERM, 261: errno.EPERM,  # utime*
    188: errno.EPERM, 189: errno.EPERM, 190: errno.EPERM, 197: errno.EPERM, 198: errno.EPERM,  # xattrs
    199: errno.EPERM, 319: errno.EPERM,  # fremovexattr memfd_create
}  # fmt: skip
_SYS_OPEN: Final = 2
_SYS_OPENAT: Final = 257
_SYS_KILL: Final = 62
_SYS_TKILL: Final = 200
_SYS_TGKILL: Final = 234
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND (O_TMPFILE needs one of the first two).
_WRITE_FLAGS: Final = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


Instruction = tuple[int, int, int, int]


def _arg_low(index: int) -> int:
    return 16 + 8 * index  # offsetof(struct seccomp_data, args[index]), the low 32 bits on little endian


_PID_SLOT: Final = 0x7FFFFFFF  # stands for this process's pid in the cached filter


def seccomp_program(pid: int) -> list[Instruction]:
    """The BPF filter (x86-64): denied calls fail with an errno, everything else is allowed."""
    deny = _RET_ERRNO | errno.EPERM
    program: list[Instruction] = [
        (_LD_ABS_W, 0, 0, 4),  # arch
        (_JEQ, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0),  # syscall number
        (_JGE, 0, 1, _X32_SYSCALL_BIT),
        (_RET, 0, 0, deny),
    ]
    for number, code in _DENIED_X86_64.items():
        program += [(_JEQ, 0, 1, number), (_RET, 0, 0, _RET_ERRNO | code)]
    # open/openat: allowed only without a flag that writes or creates.
    for number, flags_arg in ((_SYS_OPEN, 1), (_SYS_OPENAT, 2)):
        program += [
            (_JEQ, 0, 4, number),
            (_LD_ABS_W, 0, 0, _arg_low(flags_arg)),
            (_JSET, 0, 1, _WRITE_FLAGS),
            (_RET, 0, 0, deny),
            (_RET, 0, 0, _RET_ALLOW),
        ]
    # Signals: only to this process (kill(0, ...) is its own process group, which holds nothing else).
    program += [
        (_JEQ, 0, 5, _SYS_KILL),
        (_LD_ABS_W, 0, 0, _arg_low(0)),
        (_JEQ, 2, 0, pid),
        (_JEQ, 1, 0, 0),
        (_RET, 0, 0, deny),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    for number in (_SYS_TKILL, _SYS_TGKILL):
        program += [
            (_JEQ, 0, 4, number),
            (_LD_ABS_W, 0, 0, _arg_low(0)),
            (_JEQ, 1, 0, pid),
            (_RET, 0, 0, deny),
            (_RET, 0, 0, _RET_ALLOW),
        ]
    program.append((_RET, 0, 0, _RET_ALLOW))
    return program


_cached_filter: ctypes.Array[_SockFilter] | None = None


def prepare_seccomp() -> None:
    """Build the filter once (the fork server does), so each worker only writes its pid into it."""
    global _cached_filter
    if _cached_filter is None:
        program = seccomp_program(_PID_SLOT)
        _cached_filter = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))


def install_seccomp() -> tuple[str, ...]:
    """Install the filter of `seccomp_program` on this process (and anything it could still start)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise LayerUnavailable(f"the seccomp filter is written for x86-64 Linux, not {platform.machine()}")
    prepare_seccomp()
    filters = _cached_filter
    assert filters is not None
    pid = os.getpid()
    for instruction in filters:
        if instruction.code == _JEQ and instruction.k == _PID_SLOT:
            instruction.k = pid
    fprog = _SockFprog(len(filters), filters)
    no_new_privs()
    check(
        c_library().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "prctl(PR_SET_SECCOMP)"
    )
    return ("network", "filesystem writes", "new processes", "other processes")
