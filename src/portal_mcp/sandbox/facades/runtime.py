"""Stand-ins for `sys` and `logging`: what models use them for (printing to stderr, a logger), nothing more.

Not the real modules: `sys` here is two streams that print to the run's output, `exit`, and a few constants (no
`modules`, no `path`, no frames); `logging` is a small logger written here that prints `%`-style records to
the output (the real one's `{`-style formatter walks attributes in C, and its objects reach the interpreter's
logger tree and streams).
"""

from __future__ import annotations

import sys
from typing import Any, Final

from portal_mcp.sandbox.facades.common import Builder, Services
from portal_mcp.sandbox.output import Stream

__all__ = ["BUILDERS", "HINTS"]


def _sys(services: Services) -> dict[str, Any]:
    def exit(status: Any = None) -> None:
        """sys.exit: stop the code here (the run reports `SystemExit`)."""
        raise SystemExit(status)

    stream = Stream(services.write)
    return {
        "stdout": stream,
        "stderr": stream,
        "exit": exit,
        "argv": [""],
        "maxsize": sys.maxsize,
        "byteorder": sys.byteorder,
        "version": sys.version,
        "version_info": tuple(sys.version_info),
        "platform": sys.platform,
        "float_info": sys.float_info,
    }


_LEVELS: Final = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARNING": 30, "WARN": 30, "INFO": 20, "DEBUG": 10,
                  "NOTSET": 0}  # fmt: skip


class _Logging:
    """The state of one run's loggers: the root level and format set by `basicConfig`."""

    def __init__(self, write: Any) -> None:
        self.write = write
        self.level = 30
        self.format = "%(levelname)s:%(name)s:%(message)s"
        self.loggers: dict[str, Logger] = {}

    def emit(self, name: str, level: int, msg: Any, args: tuple[Any, ...]) -> None:
        message = str(msg) % args if args else str(msg)
        names = {value: key for key, value in _LEVELS.items() if key not in ("FATAL", "WARN")}
        record = {"name": name, "levelno": level, "levelname": names.get(level, f"Level {level}"),
                  "message": message, "msg": msg, "asctime": "", "module": name, "funcName": ""}  # fmt: skip
        self.write(self.format % record + "\n")


class Logger:
    """A logger printing to the run's output."""

    def __init__(self, name: str, state: _Logging) -> None:
        self.name = name
        self.level = 0
        self._state = state

    def setLevel(self, level: int | str) -> None:
        self.level = _LEVELS[level] if isinstance(level, str) else int(level)

    def getEffectiveLevel(self) -> int:
        return self.level or self._state.level

    def isEnabledFor(self, level: int) -> bool:
        return level >= self.getEffectiveLevel()

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self._state.emit(self.name, level, msg, args)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(10, msg, *args)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(20, msg, *args)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(30, msg, *args)

    warn = warning

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(40, msg, *args)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(40, msg, *args)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(50, msg, *args)

    def addHandler(self, handler: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Logger {self.name}>"


def _logging(services: Services) -> dict[str, Any]:
    state = _Logging(services.write)
    root = Logger("root", state)

    def getLogger(name: str | None = None) -> Logger:
        if not name or name == "root":
            return root
        return state.loggers.setdefault(name, Logger(name, state))

    def basicConfig(*, level: int | str | None = None, format: str | None = None, **ignored: Any) -> None:
        if level is not None:
            state.level = _LEVELS[level] if isinstance(level, str) else int(level)
        if format is not None:
            if ignored.get("style", "%") != "%":
                raise ValueError("only %-style logging formats are available in the sandbox")
            state.format = format

    members: dict[str, Any] = {"getLogger": getLogger, "basicConfig": basicConfig, "Logger": Logger}
    for function in ("debug", "info", "warning", "error", "exception", "critical", "log"):
        members[function] = getattr(root, function)
    members.update(_LEVELS)
    return members


BUILDERS: Final[dict[str, Builder]] = {"sys": _sys, "logging": _logging}

HINTS: Final[dict[str, dict[str, str]]] = {
    "sys": {
        "modules": "the interpreter's state is not available in the sandbox",
        "path": "there are no files in the sandbox",
        "stdin": "there is no input; pass values in the code",
        "_getframe": "frames are not available in the sandbox",
    },
    "logging": {"FileHandler": "there are no files; records are printed to the output"},
}
