"""Curated stand-ins for the few stdlib modules agent code may import.

Never hand agent code a real module object: many innocent modules reach `sys`/`os` through plain attributes
(`json.codecs.sys`, `datetime.sys`, `re.enum.sys`, `statistics.sys`). Each import instead returns a fresh
`Facade` holding only the functions and classes listed here; the real module is imported by this trusted code
and stays out of reach. A facade is built on first import, once per worker (one worker serves one run); the modules behind them are
imported ahead of time by the fork server (`preload`).
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FACADE_NAMES", "Facade", "FacadeImporter", "preload"]


class Facade:
    """A module-like object exposing only chosen attributes; missing ones get a helpful AttributeError."""

    def __init__(self, name: str, members: Mapping[str, Any], hints: Mapping[str, str]) -> None:
        self.__dict__.update(members)
        # Kept in a closure-free tuple so nothing here is reachable by a public attribute name.
        object.__setattr__(self, "_facade_meta", (name, tuple(sorted(members)), dict(hints)))

    def __getattr__(self, name: str) -> Any:
        module, available, hints = self.__dict__["_facade_meta"]
        if name in hints:
            raise AttributeError(f"`{module}.{name}` is not available in the sandbox; {hints[name]}")
        close = difflib.get_close_matches(name, available, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(available)}"
        raise AttributeError(f"module {module!r} in the sandbox has no attribute {name!r}{hint}")

    def __repr__(self) -> str:
        return f"<module {self.__dict__['_facade_meta'][0]!r} (sandbox subset)>"


def _public(module: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(module, name) for name in names}


def _json() -> dict[str, Any]:
    json = importlib.import_module("json")
    return _public(json, ("loads", "dumps", "JSONDecodeError"))


def _re() -> dict[str, Any]:
    re = importlib.import_module("re")
    members = _public(
        re,
        ("compile", "search", "match", "fullmatch", "split", "findall", "finditer", "sub", "subn", "escape"),
    )
    members.update(error=re.error, Pattern=re.Pattern, Match=re.Match)
    # Plain ints instead of RegexFlag enum members: the enum machinery is more surface for no benefit.
    for flag in ("IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A", "UNICODE", "U"):
        members[flag] = int(getattr(re, flag))
    return members


def _math() -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(math).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, float))
    }


def _statistics() -> dict[str, Any]:
    statistics = importlib.import_module("statistics")
    names = (
        "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low", "median_high",
        "median_grouped", "mode", "multimode", "quantiles", "pstdev", "pvariance", "stdev", "variance",
        "correlation", "covariance", "linear_regression", "NormalDist", "StatisticsError",
    )  # fmt: skip
    return _public(statistics, names)


def _datetime() -> dict[str, Any]:
    datetime = importlib.import_module("datetime")
    # `datetime.strptime` imports `_strptime` from C at first use; load it now, with the real importer.
    importlib.import_module("_strptime")
    return _public(datetime, ("datetime", "date", "time", "timedelta", "timezone", "tzinfo", "MINYEAR", "MAXYEAR"))


def _collections() -> dict[str, Any]:
    collections = importlib.import_module("collections")
    return _public(collections, ("Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"))


def _itertools() -> dict[str, Any]:
    itertools = importlib.import_module("itertools")
    return {name: value for name, value in vars(itertools).items() if not name.startswith("_") and callable(value)}


def _functools() -> dict[str, Any]:
    # Not singledispatch / lru_cache / wraps: singledispatch evaluates string annotations with plain `eval`.
    functools = importlib.import_module("functools")
    return _public(functools, ("reduce", "partial"))


def _asyncio() -> dict[str, Any]:
    asyncio = importlib.import_module("asyncio")
    return _public(asyncio, ("gather", "sleep", "wait_for", "as_completed", "TimeoutError", "Semaphore"))


def _time() -> dict[str, Any]:
    time = importlib.import_module("time")
    return _public(time, ("time", "monotonic", "perf_counter"))


_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "json": _json,
    "re": _re,
    "math": _math,
    "statistics": _statistics,
    "datetime": _datetime,
    "collections": _collections,
    "itertools": _itertools,
    "functools": _functools,
    "asyncio": _asyncio,
    "time": _time,
}

_HINTS: dict[str, dict[str, str]] = {
    "time": {
        "sleep": "use `await asyncio.sleep(seconds)`, which does not block other calls",
        "strftime": "use `datetime.datetime.now().strftime(...)`",
    },
    "asyncio": {
        "run": "the code already runs in an event loop: use `await` at the top level",
        "create_task": "pass the awaitables to `asyncio.gather(...)` instead",
        "get_event_loop": "the event loop is not exposed; use `asyncio.gather` / `asyncio.wait_for`",
        "get_running_loop": "the event loop is not exposed; use `asyncio.gather` / `asyncio.wait_for`",
    },
    "json": {"load": "use `json.loads(text)`", "dump": "use `json.dumps(value)`"},
    "functools": {"lru_cache": "memoise with a dict", "cache": "memoise with a dict"},
}

FACADE_NAMES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def preload() -> None:
    """Import every module behind a facade now (the fork server does, so workers never import from disk)."""
    for build in _BUILDERS.values():
        build()


class FacadeImporter:
    """The `__import__` of agent code: allow-listed names give facades, everything else ImportError."""

    def __init__(self) -> None:
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
            importlib.import_module(name)
            return None
        if level != 0:
            raise ImportError("relative imports are not available in the sandbox")
        facade = self._built.get(name)
        if facade is None:
            builder = _BUILDERS.get(name)
            if builder is None:
                raise ImportError(_refusal(name), name=name)
            facade = self._built[name] = Facade(name, builder(), _HINTS.get(name, {}))
        return facade


def _is_c_level_import(fromlist: Any) -> bool:
    # Bytecode passes a tuple or None; PyImport_Import passes a list: [] since 3.11, ["__doc__"] before.
    return type(fromlist) is list and all(type(item) is str and item == "__doc__" for item in fromlist)


def _refusal(name: str) -> str:
    top = name.partition(".")[0]
    if top in _BUILDERS:
        return f"module {name!r} is not available in the sandbox; import {top!r} and use what it offers"
    return (
        f"module {name!r} is not available in the sandbox; "
        f"the importable modules are {', '.join(FACADE_NAMES)} (each a curated subset)"
    )
