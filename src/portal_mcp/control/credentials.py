"""Credentials: the redaction of secret values (the `${user.KEY}` syntax itself is `config.user_refs`).

`Redactor` is the one place secret values are taken out of text: every value of the secrets file, every user's
token and secrets, the bearer tokens and every `${VAR}` value substituted into a server's `headers`. It is used on
whatever leaves the portal toward the agent (tool results, error messages), the logs (downstream events, the
stderr of stdio servers, log records of the SDK) and `portal-mcp check`.
"""

from __future__ import annotations

import json
import logging
import re
from bisect import bisect
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any
from urllib.parse import quote

REDACTED = "[redacted]"
MIN_REDACTED_LENGTH = 8
"""Shorter values are not redacted: they would match ordinary words and numbers. Real tokens are longer."""
PIECE_LENGTH = 12
"""Shorter pieces of a secret (e.g. at a line wrap) are not redacted: see `Redactor`."""
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.~+/-]+")
_LOWER, _UPPER, _DIGIT = re.compile("[a-z]"), re.compile("[A-Z]"), re.compile("[0-9]")
_GRAM, _STRIDE = 6, 7
"""Samples of `_GRAM` characters every `_STRIDE`: any `PIECE_LENGTH` characters contain one (_GRAM + _STRIDE - 1)."""


class Redactor:
    """Replaces secret values in text with `[redacted]`: whole values, and long enough pieces of them.

    Whole values: every configured value of at least `MIN_REDACTED_LENGTH` characters, longest first, and its
    percent-encoded and JSON-escaped spellings (a server that echoes a header back in a URL or a JSON string changes
    its spelling).

    Pieces: text is often wrapped or cut (a rich traceback on a downstream's stderr folds a long token over three
    lines, which the portal reads one by one), so a run of token characters (letters, digits and `_-.~+/`; `=`, `:`,
    whitespace and anything else end a run, so `token=abc...` splits) is redacted too when it is a piece of a secret:
    at least `PIECE_LENGTH` (12) characters long, each of its 12-character windows found in a secret's spelling (so
    it is secret text), and random-looking (at least two of lowercase, uppercase, digits). The length
    and the mix keep ordinary words: a DSN secret `postgresql://user:pw@db-prod-2024.internal/app` does not take
    `postgresql`, `localhost`, `db`, `internal` or a longer all-lowercase part (`.internal/app`, `analytics_warehouse`) out of
    other text, while its `db-prod-2024.internal` (letters and digits) is redacted where it appears alone.
    Not caught: a piece shorter than 12 characters (e.g. the last few characters of a token at a wrap boundary),
    an all-lowercase or all-digit piece, and secrets shorter than `MIN_REDACTED_LENGTH` (never redacted at all).
    A short piece is not enough to use the credential; the longer pieces around it are redacted.

    Fast on large text: a text is only searched for pieces when one of its 6-character samples taken every 7
    characters (zip of strided slices, so done in C) is in the precomputed set of the secrets' 6-grams, which every
    12-character piece must contain; then only the windows around those samples are looked up.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._given = {value for value in values if len(value) >= MIN_REDACTED_LENGTH}
        self._build()

    def add(self, values: Iterable[str]) -> None:
        """Redact these values too from now on (tokens the portal obtains while it runs: users' OAuth tokens)."""
        new = {value for value in values if len(value) >= MIN_REDACTED_LENGTH} - self._given
        if new:
            self._given |= new
            self._build()

    def _build(self) -> None:
        forms: set[str] = set()
        for value in self._given:
            if len(value) < MIN_REDACTED_LENGTH:
                continue
            forms.add(value)
            forms.add(quote(value, safe=""))
            forms.add(json.dumps(value)[1:-1])
        self._values = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(value) for value in self._values)) if self._values else None
        windows: set[str] = set()
        for form in self._values:
            for run in _TOKEN_RUN.findall(form):
                windows.update(run[i : i + PIECE_LENGTH] for i in range(len(run) - PIECE_LENGTH + 1))
        self._windows = frozenset(windows)
        self._grams = frozenset(
            tuple(window[i : i + _GRAM]) for window in windows for i in range(PIECE_LENGTH - _GRAM + 1)
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} forms)"  # never the values

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        if self._holds_value(text):
            text = self._pattern.sub(REDACTED, text)
        return _cut(text, self._piece_spans(text))

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string (and mapping key) redacted; other values unchanged.

        Returned as is (not copied) when none of its strings holds a secret or a piece of one."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        strings: list[str] = []
        _collect_strings(value, strings)
        # One search over all the strings at once ("\n" ends a token run, so no piece spans two of them), then
        # only the strings a hit touches are redacted one by one.
        joined = "\n".join(strings)
        hits = [match.span() for match in self._pattern.finditer(joined)] if self._holds_value(joined) else []
        hits += self._piece_spans(joined)
        if not hits:
            return value
        ends = list(accumulate(len(string) + 1 for string in strings))
        touched = {index for start, stop in hits for index in range(bisect(ends, start), bisect(ends, stop - 1) + 1)}
        return self._value(value, iter(range(len(strings))), touched)

    def _value(self, value: Any, numbers: Iterator[int], touched: set[int]) -> Any:
        """`value` rebuilt with its touched strings (numbered in `_collect_strings` order) redacted."""
        if isinstance(value, str):
            return self.text(value) if next(numbers) in touched else value
        if isinstance(value, dict):
            return {
                self._value(key, numbers, touched): self._value(item, numbers, touched) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._value(item, numbers, touched) for item in value]
        return value

    def _holds_value(self, text: str) -> bool:
        if len(text) < 256:  # the regex is faster on short text, one substring search per form on long text
            return self._pattern is not None and self._pattern.search(text) is not None
        return any(value in text for value in self._values)

    def _piece_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, stop) of each maximal run of `text` whose every 12-character window is in a secret, if it looks
        random; in order, not overlapping."""
        if len(text) < PIECE_LENGTH:
            return []
        if self._grams.isdisjoint(_samples(text)):  # the common case, and cheaper than the intersection
            return []
        found = self._grams.intersection(_samples(text))
        grams = {"".join(sample) for sample in found}
        if sum(text.count(gram) for gram in grams) > len(text) // (_STRIDE * 8):  # many: walk the samples once
            positions = [index * _STRIDE for index, sample in enumerate(_samples(text)) if sample in found]
        else:  # few (the usual case): find them, keep the sampled ones
            positions = [position for gram in grams for position in _sampled_occurrences(text, gram)]
        last = len(text) - PIECE_LENGTH
        starts: set[int] = set()
        for position in positions:  # a window holding the sample text[p:p+6] starts at p-6 .. p
            for start in range(max(0, position - (PIECE_LENGTH - _GRAM)), min(position, last) + 1):
                if text[start : start + PIECE_LENGTH] in self._windows:
                    starts.add(start)
        spans: list[tuple[int, int]] = []
        for start in sorted(starts):
            if spans and start + PIECE_LENGTH - 1 == spans[-1][1]:
                spans[-1] = (spans[-1][0], start + PIECE_LENGTH)
            else:
                spans.append((start, start + PIECE_LENGTH))
        return [(start, stop) for start, stop in spans if _looks_random(text[start:stop])]

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


def _samples(text: str) -> Iterator[tuple[str, ...]]:
    """text[0:6], text[7:13], text[14:20], ... as tuples of characters. Any 12 consecutive characters contain one."""
    return zip(*(text[offset::_STRIDE] for offset in range(_GRAM)), strict=False)  # the last slices are shorter


def _sampled_occurrences(text: str, gram: str) -> Iterator[int]:
    """Where `gram` occurs in `text` at a sample's position (a multiple of `_STRIDE`)."""
    position = text.find(gram)
    while position != -1:
        if position % _STRIDE == 0:
            yield position
        position = text.find(gram, position + 1)


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each (start, stop) span replaced by `[redacted]`."""
    if not spans:
        return text
    parts: list[str] = []
    end = 0
    for start, stop in spans:
        parts += (text[end:start], REDACTED)
        end = stop
    parts.append(text[end:])
    return "".join(parts)


def _looks_random(piece: str) -> bool:
    kinds = (_LOWER.search(piece), _UPPER.search(piece), _DIGIT.search(piece))
    return sum(kind is not None for kind in kinds) >= 2


def _collect_strings(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect_strings(key, into)
            _collect_strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect_strings(item, into)


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message (and traceback text) with secrets redacted.

    Added by the owner of the log output to its handlers (`portal-mcp serve` to the one `logs.configure` installs;
    an application embedding a `Portal` to its own: `portal.redactor.filter()`), so records of the SDK and httpx,
    which the portal does not write, are covered too. Nothing in the portal adds it to handlers it does not own.
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
