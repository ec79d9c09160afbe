"""The language level follows the confinement: the open language only where the OS keeps the worker from the
network and the files, the strict one elsewhere, unless the operator chose. Layers are switched off here by a
fork server whose confinement steps refuse, as on a kernel (or an OS) without them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import pytest

from portal_mcp.config import SandboxConfig
from portal_mcp.sandbox import forkserver
from portal_mcp.sandbox.host import SandboxHost
from portal_mcp.sandbox.language import choose_language
from portal_mcp.sandbox.seatbelt import PROFILE

pytestmark = pytest.mark.anyio

_ALL = {
    "network": ("netns", "landlock", "seccomp"),
    "filesystem writes": ("rlimit", "landlock", "seccomp"),
    "filesystem reads": ("landlock",),
    "new processes": ("seccomp",),
    "other processes": ("capabilities", "landlock", "seccomp"),
}
_MACOS = dict.fromkeys(_ALL, ("seatbelt",)) | {"filesystem writes": ("rlimit", "seatbelt")}
_NOTHING = dict.fromkeys(_ALL, ()) | {"filesystem writes": ("rlimit",)}
_NO_LANDLOCK = _ALL | {"filesystem reads": ()}


@pytest.mark.parametrize(
    ("setting", "layers", "expected"),
    [
        ("auto", _ALL, "open"),
        ("auto", _MACOS, "open"),
        ("auto", _NOTHING, "strict"),  # Windows, or Linux without namespaces, Landlock and seccomp
        ("auto", _NO_LANDLOCK, "strict"),  # files readable by an escaped worker
        ("auto", _ALL | {"network": ()}, "strict"),
        ("auto", {}, "strict"),  # not known yet
        ("open", _NOTHING, "open"),  # the operator's choice
        ("strict", _ALL, "strict"),
    ],
)
def test_the_language_is_open_only_where_network_and_files_are_confined(
    setting: str, layers: dict[str, tuple[str, ...]], expected: str
) -> None:
    assert choose_language(setting, layers) == expected


def _zygote_without(*mechanisms: str) -> tuple[str, ...]:
    switch_off = textwrap.dedent(
        f"""
        import sys; sys.modules['ssl'] = None
        from portal_mcp.sandbox import confine
        def refuse():
            raise confine.LayerUnavailable('switched off by the test')
        for name in {mechanisms!r}:
            setattr(confine, name, refuse)
        from portal_mcp.sandbox.zygote import main
        main()
        """
    )
    return (sys.executable, "-I", "-B", "-c", switch_off)


_KERNEL_LAYERS = ("isolate_network", "drop_capabilities", "restrict_filesystem", "install_seccomp", "enter_seatbelt")
_OPEN_SNIPPET = "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\ntype(P(1)).__name__"


@pytest.fixture
def without_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkserver, "ZYGOTE_COMMAND", _zygote_without(*_KERNEL_LAYERS))


async def _run(code: str, **limits: object) -> tuple[str, str]:
    with anyio.fail_after(60):
        async with SandboxHost(SandboxConfig(**limits)) as host:  # type: ignore[arg-type]
            result = await host.run(code, {}, _no_tools)
            return host.language, result.render()


async def _no_tools(tool: str, args: dict[str, object]) -> object:
    raise AssertionError("no tool is called here")


async def test_without_kernel_layers_the_code_runs_in_the_strict_language(without_layers: None) -> None:
    language, reply = await _run(_OPEN_SNIPPET)
    assert language == "strict"
    assert '"__name__" is an invalid attribute name because it starts with "_"' in reply
    language, reply = await _run("import dataclasses")
    assert "ModuleNotFoundError: module 'dataclasses' is not available" in reply
    language, reply = await _run("type(1)")
    assert "NameError: name 'type' is not defined" in reply
    language, reply = await _run("import json\njson.dumps([1])")  # the strict language still runs plain code
    assert reply == "Value: '[1]'"


async def test_the_operator_may_open_the_language_without_kernel_layers(without_layers: None) -> None:
    language, reply = await _run(_OPEN_SNIPPET, language="open")
    assert (language, reply) == ("open", "Value: 'P'")


async def test_without_landlock_files_are_readable_so_the_language_is_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkserver, "ZYGOTE_COMMAND", _zygote_without("restrict_filesystem", "enter_seatbelt"))
    language, reply = await _run(_OPEN_SNIPPET)
    assert language == "strict"
    assert "is an invalid attribute name" in reply


async def test_with_every_layer_the_language_is_open() -> None:
    language, reply = await _run(_OPEN_SNIPPET)
    if language != "open":
        pytest.skip("this kernel lacks a layer the open language needs")
    assert reply == "Value: 'P'"


def test_the_worker_side_imports_and_confines_without_posix_only_modules() -> None:
    # As on Windows: no `resource`, `pwd`, `fcntl`, `termios`; the rlimits are reported missing, nothing fails.
    probe = textwrap.dedent(
        """
        import sys
        for name in ('resource', 'pwd', 'fcntl', 'termios', 'grp'):
            sys.modules[name] = None
        from portal_mcp.sandbox import confine, facades, policy, worker, host
        report = confine.confine(256, 5)
        print(report.unavailable[0])
        print(policy.choose_language('auto', report.layers))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    first, language = done.stdout.splitlines()[:2]
    assert first.startswith("rlimit: ") and "has no rlimits" in first
    assert language in ("open", "strict")


def test_the_seatbelt_profile_denies_by_default_and_lets_the_worker_signal_only_itself() -> None:
    lines = PROFILE.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    allowed = [line for line in lines if line.startswith("(allow")]
    assert "(allow signal (target self))" in allowed
    assert not any(word in line for line in allowed for word in ("file-read", "file-write", "network", "process"))
