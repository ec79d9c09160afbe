"""Each OS layer on its own: a fresh interpreter applies one mechanism of `confine.py`, then probes what it may
still do. A mechanism this kernel does not offer is skipped here (the host reports and logs it instead)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal_mcp.sandbox import confine

_PROBE = textwrap.dedent(
    """
    import errno, json, os, resource, socket, sys
    from portal_mcp.sandbox import confine

    mechanism, folder, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    before = open(sys.executable, 'rb')  # opened before the layer applies
    report = {}
    try:
        if mechanism == 'apply_rlimits':
            confine.apply_rlimits(256, 5)
            report['layers'] = []
        elif mechanism == 'confine_without_kernel_layers':
            def refuse():
                raise confine.LayerUnavailable('switched off by the test')
            for name in ('isolate_network', 'drop_capabilities', 'restrict_filesystem', 'install_seccomp',
                         'enter_seatbelt'):
                setattr(confine, name, refuse)
            result = confine.confine(256, 5)
            report['layers'] = result.layers
            report['unavailable'] = result.unavailable
        else:
            report['layers'] = list(getattr(confine, mechanism)())
    except confine.LayerUnavailable as exc:
        print(json.dumps({'unavailable': str(exc)}))
        raise SystemExit(0)

    def probe(name, action):
        try:
            action()
            report[name] = 'ok'
        except OSError as exc:
            report[name] = errno.errorcode.get(exc.errno, str(exc.errno))
        except ValueError as exc:
            report[name] = 'ValueError'

    def connect():
        with socket.create_connection(('127.0.0.1', port), timeout=2):
            pass

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    def write_file():
        fd = os.open(os.path.join(folder, 'written'), os.O_WRONLY | os.O_CREAT)
        try:
            os.write(fd, b'x')
        finally:
            os.close(fd)

    def raise_limit():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.RLIM_INFINITY))

    probe('read_file', lambda: open('/etc/passwd').read())
    probe('read_fd_opened_before', lambda: before.read(16))
    probe('write_file', write_file)
    probe('make_dir', lambda: os.mkdir(os.path.join(folder, 'made')))
    probe('socket', lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    probe('connect', connect)
    probe('fork', fork)
    probe('signal_parent', lambda: os.kill(os.getppid(), 0))
    probe('signal_self', lambda: os.kill(os.getpid(), 0))
    probe('parent_environ', lambda: open(f'/proc/{os.getppid()}/environ', 'rb').read())
    probe('raise_limit', raise_limit)
    report['netns'] = os.readlink('/proc/self/ns/net') if os.path.exists('/proc/self/ns/net') else None
    report['status'] = {
        key: value.strip()
        for key, _, value in (line.partition(':') for line in open('/proc/self/status').read().splitlines())
        if key in ('Seccomp', 'NoNewPrivs', 'CapEff')
    } if report.get('read_file') == 'ok' else {}
    print(json.dumps(report))
    """
)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections in this (unconfined) process."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _probe(mechanism: str, folder: Path, port: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, mechanism, str(folder), str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    if "unavailable" in report and mechanism != "confine_without_kernel_layers":
        pytest.skip(f"{mechanism}: {report['unavailable']}")
    return report


def _our_netns() -> str:
    return os.readlink("/proc/self/ns/net")


def test_rlimits_alone_stop_file_writes_but_not_reads(tmp_path: Path, listener: int) -> None:
    report = _probe("apply_rlimits", tmp_path, listener)
    assert report["read_file"] == "ok"
    assert report["write_file"] == "EFBIG"  # RLIMIT_FSIZE=0: a file can be created, not written to
    assert report["raise_limit"] in ("ValueError", "EPERM") or os.geteuid() == 0  # root may raise hard limits


def test_a_network_namespace_alone_cuts_the_network_and_nothing_else(tmp_path: Path, listener: int) -> None:
    report = _probe("isolate_network", tmp_path, listener)
    assert report["layers"] == ["network"]
    assert report["netns"] != _our_netns()
    assert report["socket"] == "ok"  # sockets can be made, but there is no interface to reach anything
    assert report["connect"] in ("ENETUNREACH", "ECONNREFUSED", "EADDRNOTAVAIL")
    assert report["read_file"] == "ok"
    assert report["fork"] == "ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping capabilities matters for root only")
def test_dropped_capabilities_alone_keep_root_out_of_other_processes(tmp_path: Path, listener: int) -> None:
    report = _probe("drop_capabilities", tmp_path, listener)
    assert report["layers"] == ["other processes"]
    assert report["status"]["CapEff"] == "0000000000000000"
    assert report["parent_environ"] == "EACCES"  # the portal's credentials, for a same-uid process
    assert report["read_file"] == "ok"


def test_landlock_alone_forbids_opening_any_path(tmp_path: Path, listener: int) -> None:
    report = _probe("restrict_filesystem", tmp_path, listener)
    assert {"filesystem reads", "filesystem writes"} <= set(report["layers"])
    assert report["read_file"] == "EACCES"
    assert report["parent_environ"] == "EACCES"
    assert report["write_file"] == "EACCES"
    assert report["make_dir"] == "EACCES"
    assert report["read_fd_opened_before"] == "ok"
    if "network" in report["layers"]:  # ABI 4
        assert report["connect"] == "EACCES"
    if "other processes" in report["layers"]:  # ABI 6
        assert report["signal_parent"] == "EPERM"
        assert report["signal_self"] == "ok"
    assert not (tmp_path / "made").exists()


def test_seccomp_alone_forbids_sockets_processes_signals_and_writes(tmp_path: Path, listener: int) -> None:
    report = _probe("install_seccomp", tmp_path, listener)
    assert report["layers"] == ["network", "filesystem writes", "new processes", "other processes"]
    assert report["status"]["Seccomp"] == "2"
    assert report["status"]["NoNewPrivs"] == "1"
    assert report["socket"] == "EPERM"
    assert report["connect"] == "EPERM"
    assert report["fork"] == "EPERM"
    assert report["write_file"] == "EPERM"
    assert report["make_dir"] == "EPERM"
    assert report["signal_parent"] == "EPERM"
    assert report["signal_self"] == "ok"
    assert report["raise_limit"] == "EPERM"
    assert report["read_file"] == "ok"  # reads are Landlock's job
    assert not (tmp_path / "written").exists()


def test_confine_reports_missing_mechanisms_instead_of_failing(tmp_path: Path, listener: int) -> None:
    report = _probe("confine_without_kernel_layers", tmp_path, listener)
    assert report["unavailable"] == [
        f"{mechanism}: switched off by the test" for mechanism in ("netns", "capabilities", "landlock", "seccomp")
    ]
    assert report["layers"]["network"] == []
    assert report["layers"]["filesystem writes"] == ["rlimit"]
    assert report["write_file"] == "EFBIG"  # the rlimits still apply


def test_the_seccomp_filter_checks_the_architecture_first_and_allows_by_default() -> None:
    program = confine.seccomp_program(1234)
    load_arch, check_arch, kill = program[:3]
    assert load_arch == (0x20, 0, 0, 4)
    assert check_arch[0] == 0x15 and check_arch[3] == 0xC000003E
    assert kill == (0x06, 0, 0, 0x80000000)
    assert program[-1] == (0x06, 0, 0, 0x7FFF0000)
    for index, (code, jump_true, jump_false, _) in enumerate(program):
        if code & 0x07 == 0x05:  # a jump: both targets inside the program
            assert index + 1 + max(jump_true, jump_false) < len(program)
    assert sum(1 for code, _, _, value in program if code == 0x15 and value == 1234) == 3  # kill, tkill, tgkill
