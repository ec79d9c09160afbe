"""Credentials: the `${user.KEY}` references of downstream headers/env, and the redaction of secret values.

`${user.KEY}` in a remote server's `headers` or a stdio server's `env` is not expanded when the config loads (the
load-time `${VAR}` pattern does not match the dot); it is resolved for each call from the calling user's
`http.users.NAME.secrets`. `$${user.KEY}` is a literal `${user.KEY}`.

`Redactor` is the one place secret values are taken out of text: every value of the secrets file, every user's
token and secrets, the bearer tokens and every `${VAR}` value substituted into a server's `headers`. It is used on
whatever leaves the portal toward the agent (tool results, error messages), the logs (downstream events, the
stderr of stdio servers, log records of the SDK) and `portal-mcp check`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

USER_REF = re.compile(r"\$(\$)?\{user\.([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${user.KEY}` (group 2 is KEY); with a leading `$` (group 1) it is an escaped, literal `${user.KEY}`."""
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REDACTED = "[redacted]"
MIN_REDACTED_LENGTH = 8
"""Shorter values are not redacted: they would match ordinary words and numbers. Real tokens are longer."""


def user_keys(text: str) -> set[str]:
    """The KEYs of the (unescaped) `${user.KEY}` references in `text`."""
    return {match.group(2) for match in USER_REF.finditer(text) if not match.group(1)}


def keys_needed(values: Iterable[str]) -> frozenset[str]:
    """Every KEY referred to as `${user.KEY}` in these values."""
    found: set[str] = set()
    for value in values:
        found |= user_keys(value)
    return frozenset(found)


def missing_keys(needed: Iterable[str], secrets: Mapping[str, str]) -> list[str]:
    """The needed KEYs a user does not have (an empty value counts as not set), sorted."""
    return sorted(key for key in needed if not secrets.get(key))


def expand_user_refs(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with each `${user.KEY}` replaced by the user's secret (check `missing_keys` first: a missing KEY
    raises KeyError) and each `$${user.KEY}` by a literal `${user.KEY}`."""

    def expand(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        return secrets[match.group(2)]

    return USER_REF.sub(expand, text)


def first_user_with(needed: Iterable[str], users: Mapping[str, Mapping[str, str]]) -> str | None:
    """The first user (in config order) who has every needed secret."""
    needed = list(needed)
    for name, secrets in users.items():
        if not missing_keys(needed, secrets):
            return name
    return None


class Redactor:
    """Replaces every configured secret value in text with `[redacted]` (longest values first).

    Besides the value itself, its percent-encoded and JSON-escaped forms are replaced: a server that echoes a
    header back in a URL or a JSON string changes its spelling.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if len(value) < MIN_REDACTED_LENGTH:
                continue
            forms.add(value)
            forms.add(quote(value, safe=""))
            forms.add(json.dumps(value)[1:-1])
        self._values = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(value) for value in self._values)) if self._values else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} forms)"  # never the values

    def text(self, text: str) -> str:
        if self._pattern is None or not any(value in text for value in self._values):
            return text
        return self._pattern.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string (and mapping key) redacted; other values unchanged."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(key): self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def error(self, exc: BaseException) -> BaseException:
        """Redact an exception's message in place (its args and its string attributes, e.g. `message`); returns it."""
        if self._pattern is None:
            return exc
        exc.args = tuple(self.text(arg) if isinstance(arg, str) else arg for arg in exc.args)
        for name, attr in list(vars(exc).items()):
            if isinstance(attr, str):
                setattr(exc, name, self.text(attr))
        return exc

    def filter(self) -> RedactingFilter:
        return RedactingFilter(self)


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message (and traceback text) with secrets redacted.

    Installed on the handlers of the root logger while a `DownstreamPool` is open, so records of the SDK and httpx,
    which the portal does not write, are covered too.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        redacted = self._redactor.text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            redacted = self._redactor.text(text)
            if redacted != text:
                record.exc_text, record.exc_info = redacted, None
        elif record.exc_text:
            record.exc_text = self._redactor.text(record.exc_text)
        return True
