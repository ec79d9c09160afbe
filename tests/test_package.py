"""The package root is a deliberate face for embedding: the portal, its config and the error tree, nothing else,
and importing it (or any submodule) does not load the portal."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import portal_mcp
from portal_mcp import config, errors, portal

FACE = {
    "Portal": portal.Portal,
    "PortalConfig": config.PortalConfig,
    "load_config": config.load_config,
    "__version__": portal_mcp.__version__,
}


def test_the_root_exports_the_portal_its_config_and_every_error() -> None:
    error_tree = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.PortalError) and cls.__module__ == errors.__name__
    }
    assert sorted(portal_mcp.__all__) == sorted({*FACE, *error_tree}), (
        "a new error in errors.py belongs in portal_mcp/__init__.py's imports and __all__"
    )
    for name, value in {**FACE, **error_tree}.items():
        assert getattr(portal_mcp, name) is value, name
    assert set(portal_mcp.__all__) <= set(dir(portal_mcp))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        getattr(portal_mcp, "Nothing")  # noqa: B009


def test_importing_the_package_loads_neither_the_portal_nor_the_sdk() -> None:
    probe = (
        "import sys, portal_mcp\n"
        "print(sorted(m for m in sys.modules if m in ('portal_mcp.portal', 'portal_mcp.config', 'mcp')))\n"
        "portal_mcp.Portal\n"
        "print('portal_mcp.portal' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "True"]
