"""The public surface of `portal_mcp.sandbox`."""

from __future__ import annotations


def test_the_package_exports_the_host_api_lazily() -> None:
    import portal_mcp.sandbox as sandbox
    from portal_mcp.sandbox import host

    assert sandbox.__all__ == ["RunResult", "SandboxHost", "ToolCaller"]
    assert sandbox.SandboxHost is host.SandboxHost
    assert sandbox.RunResult is host.RunResult
