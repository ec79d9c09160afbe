"""Curated stand-ins for the stdlib modules agent code may import.

Never hand agent code a real module object: many innocent modules reach `sys`/`os` through plain attributes
(`json.codecs.sys`, `datetime.sys`, `re.enum.sys`, `typing.sys`, `dataclasses.inspect.os`). Each import instead
returns a fresh `Facade` holding only the functions and classes listed in `core.py`, `text.py` and `code.py`;
the real module is imported by this trusted code and stays out of reach. Members that would reopen a door are
left out or wrapped (`typing.get_type_hints` and `functools.singledispatch` evaluate strings, `string.Formatter`
walks attributes in C, `operator.attrgetter` goes through the guards here, `pprint` prints to the run's output).

A facade is built on first import, once per worker (one worker serves one run); the modules behind them are
imported ahead of time by the fork server (`preload`), because a confined worker cannot read files.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from portal_mcp.sandbox.facades import code, core, runtime, text
from portal_mcp.sandbox.facades.common import Builder, Services

__all__ = [
    "FACADE_NAMES",
    "STRICT_NAMES",
    "Facade",
    "FacadeImporter",
    "Services",
    "importable",
    "preload",
    "server_alias",
]

_BUILDERS: Final[dict[str, Builder]] = {**core.BUILDERS, **text.BUILDERS, **code.BUILDERS, **runtime.BUILDERS}
_HINTS: Final[dict[str, dict[str, str]]] = {**core.HINTS, **text.HINTS, **code.HINTS, **runtime.HINTS}

# The strict language (see policy/language.py): the ten modules, with the members they always had.
_STRICT: Final[dict[str, tuple[str, ...] | None]] = {
    "json": ("loads", "dumps", "JSONDecodeError"),
    "re": None,
    "math": None,
    "statistics": None,
    "datetime": ("datetime", "date", "time", "timedelta", "timezone", "tzinfo", "MINYEAR", "MAXYEAR"),
    "collections": ("Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"),
    "itertools": None,
    "functools": ("reduce", "partial"),
    "asyncio": ("gather", "sleep", "wait_for", "as_completed", "TimeoutError", "Semaphore"),
    "time": ("time", "monotonic", "perf_counter"),
}

FACADE_NAMES: Final[tuple[str, ...]] = tuple(sorted(name for name in _BUILDERS if not name.startswith("_")))
STRICT_NAMES: Final[tuple[str, ...]] = tuple(sorted(_STRICT))
_TOP_NAMES: Final = frozenset(name.partition(".")[0] for name in FACADE_NAMES)


def importable(level: str = "open") -> tuple[str, ...]:
    """The module names agent code may import at this language level (for messages and descriptions)."""
    return STRICT_NAMES if level == "strict" else FACADE_NAMES


def server_alias(server: str) -> str | None:
    """The second name of a server named like an importable module (`time` -> `time_`): `import time` gives the
    module, and the server stays reachable as `time_` (and as `time` until something imports that module)."""
    return f"{server}_" if server in _TOP_NAMES else None


def name_clashes(servers: Iterable[str]) -> list[tuple[str, str]]:
    """(server, warning) for each server named like an importable module, for the operator's log."""
    return [
        (server, f"server {server!r} is named like the module `{server}`: in execute_code `import {server}` gives the "
         f"module, and the server stays reachable as `{alias}` (and as `{server}` where nothing imported the module)")
        for server in servers
        if (alias := server_alias(server)) is not None
    ]  # fmt: skip


_META: Final = "_facade meta"  # not an identifier: no attribute or `from` import can name it


class Facade:
    """A module-like object exposing only chosen attributes; missing ones get a helpful AttributeError."""

    def __init__(
        self, name: str, members: Mapping[str, Any], hints: Mapping[str, str], server_alias: str | None = None
    ) -> None:
        self.__dict__.update(members)
        self.__dict__[_META] = (name, tuple(sorted(members)), dict(hints), server_alias)

    def __getattr__(self, name: str) -> Any:
        module, available, hints, alias = self.__dict__[_META]
        if name in hints:
            raise AttributeError(f"`{module}.{name}` is not available in the sandbox; {hints[name]}")
        close = difflib.get_close_matches(name, available, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(available)}"
        if alias is not None:
            hint += (
                f". If you meant the tool `{module}.{name}` of the server {module!r}: `import {module}` gave the "
                f"module, so call it as `{alias}.{name}(...)`"
            )
        raise AttributeError(f"module {module!r} in the sandbox has no attribute {name!r}{hint}")

    def __repr__(self) -> str:
        return f"<module {self.__dict__[_META][0]!r} (sandbox subset)>"


def preload(*, zones: bool = True) -> None:
    """Import every module behind a facade now (the fork server does, so workers never import from disk);
    `zones` loads the time zone database too (~0.1 s; without it `ZoneInfo` reads files, which a worker
    confined by Landlock cannot)."""
    services = Services(write=lambda text: None, describe=str, getattr=getattr)
    for build in _BUILDERS.values():
        build(services)
    if zones:
        core.preload_zones()


@dataclass
class FacadeImporter:
    """The `__import__` of agent code: allow-listed names give facades, everything else ImportError."""

    level: str
    services: Services

    def __post_init__(self) -> None:
        self._built: dict[str, Facade] = {}

    def __call__(
        self,
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Facade | None:
        if type(name) is not str:
            raise TypeError("module name must be a string")
        if _is_c_level_import(fromlist):
            # CPython's PyImport_Import (C code: `datetime.strptime`, the unawaited-coroutine warning) calls
            # the *running frame's* `__import__` only for its side effect, then reads sys.modules itself.
            # Agent code cannot produce this call shape (an import statement never passes a list, and the
            # name `__import__` is out of reach), and the module is never returned.
            import importlib

            importlib.import_module(name)
            return None
        if type(level) is not int or level != 0:
            raise ImportError("relative imports are not available in the sandbox")
        facade = self._get(name)
        if fromlist or "." not in name:
            return facade
        return self._get(name.partition(".")[0])

    def _get(self, name: str) -> Facade:
        facade = self._built.get(name)
        if facade is not None:
            return facade
        if not self._allowed(name):
            raise ModuleNotFoundError(_refusal(name, self.level), name=name)
        members = _BUILDERS[name](self.services)
        if self.level == "strict" and (kept := _STRICT.get(name)) is not None:
            members = {key: value for key, value in members.items() if key in kept}
        for child in _BUILDERS:
            if child.startswith(name + ".") and self._allowed(child):
                members[child[len(name) + 1 :]] = self._get(child)
        alias = server_alias(name) if name in self.services.servers else None
        facade = self._built[name] = Facade(name, members, _HINTS.get(name, {}), alias)
        return facade

    def _allowed(self, name: str) -> bool:
        return name in _BUILDERS and (self.level != "strict" or name in _STRICT)


def _is_c_level_import(fromlist: Any) -> bool:
    # Bytecode passes a tuple or None; PyImport_Import passes a list: [] since 3.11, ["__doc__"] before.
    return type(fromlist) is list and all(type(item) is str and item == "__doc__" for item in fromlist)


_WHY_NOT: Final = {
    "os": "there is no file system or environment to reach; os.path string helpers: use str methods or posixpath-"
    "free code, e.g. name.rsplit('/', 1)",
    "subprocess": "no processes can be started",
    "socket": "there is no network; call the tools instead",
    "requests": "there is no network; call the tools instead",
    "httpx": "there is no network; call the tools instead",
    "urllib.request": "there is no network; call the tools instead",
    "pathlib": "there is no file system; get data from tool results",
}


def _refusal(name: str, level: str) -> str:
    top = name.partition(".")[0]
    available = importable(level)
    if top in available and name not in _BUILDERS:
        return f"module {name!r} is not available in the sandbox; import {top!r} and use what it offers"
    why = _WHY_NOT.get(name) or _WHY_NOT.get(top)
    reason = f" ({why})" if why else ""
    return (
        f"module {name!r} is not available in the sandbox{reason}; "
        f"the importable modules are {', '.join(available)} (each a curated subset)"
    )
