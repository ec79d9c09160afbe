"""The portal's log output on stderr: `text` (one readable line) or `json` (one JSON object per line).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, then the structured fields a call site
passes as `extra=` (`server`, `event`, `user`) and `exception` for a traceback. Messages are written to name what
happened and how to fix it; they never carry argument values or credentials, and neither do the fields.

Stdio servers' stderr arrives as `[name] line` text; `DownstreamStderr` turns it into log records (`server`,
`event: "stderr"`) so that in JSON mode every line on stderr parses.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal, NamedTuple, TextIO, cast

LogFormat = Literal["text", "json"]
FIELDS = ("server", "event", "user")
"""Structured fields copied from a record's `extra=` into the JSON object."""
TEXT_FORMAT = "portal-mcp %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a traceback already rendered (and redacted) by a filter
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class DownstreamStderr(io.TextIOBase):
    """A text stream for stdio servers' stderr (`[name] line` per line) that logs each line as a record."""

    _LINE = re.compile(r"\[(?P<server>[^\]]*)\] (?P<text>.*)", re.DOTALL)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("portal_mcp.downstream.stderr")
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            match = self._LINE.fullmatch(line)
            server, message = (match["server"], match["text"]) if match else (None, line)
            self._logger.info("%s", message, extra={"server": server, "event": "stderr"})
        return len(text)


def downstream_stderr() -> TextIO:
    """A `DownstreamStderr`, typed as the text stream `Portal.open(errlog=...)` takes: a TextIOBase, it has every
    method the pool's stderr pump uses."""
    return cast(TextIO, DownstreamStderr())


class LogOutput(NamedTuple):
    """What `configure` installed: the handler (add filters to it, e.g. the portal's redaction) and the stream
    stdio servers' stderr should go to."""

    handler: logging.Handler
    errlog: TextIO | None


def configure(log_format: LogFormat, stream: TextIO | None = None) -> LogOutput:
    """Send the portal's logs to `stream` (default stderr) in `log_format`; INFO for the portal, WARNING for the rest.

    The process's logging is the command's to set (`portal-mcp serve`), never a library object's: a `Portal` changes
    no logging settings, so the caller adds the portal's redaction to the returned handler once the config is known.
    `errlog` is None (the portal's stderr) for text, a `DownstreamStderr` for JSON. In JSON mode Python warnings are
    logged too, so nothing else writes to stderr.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("portal_mcp").setLevel(logging.INFO)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    if log_format == "json":
        logging.captureWarnings(True)
        return LogOutput(handler, downstream_stderr())
    return LogOutput(handler, None)
