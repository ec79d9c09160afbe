"""What a person approving a call reads: every argument on a line of its own, nothing hidden, nothing disguised.

A single preview of all arguments cut at one length let a long first argument (a memo) push the ones that matter
(`to_account`, `amount`) out of sight. Here each argument is shown, each value cut on its own, and every character
that can move or hide text (control characters, bidi overrides, line and paragraph separators, zero-width and
other format characters) is shown as a `\\uXXXX` escape. The prompt ends with a fingerprint of the full
arguments: `arguments_digest`; the bridge checks the call it sends still has that digest (`approval:changed`).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

MAX_VALUE_CHARS: Final = 200
"""Characters of one argument's value shown (the rest is counted, not shown)."""
MAX_NAME_CHARS: Final = 64
_HIDING: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


def escape(text: str) -> str:
    """`text` with every character that can hide or reorder what is displayed written as an escape."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escaped(char) if unicodedata.category(char) in _HIDING else char for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def render_arguments(arguments: Mapping[str, Any]) -> str:
    """One line per argument, `name = value`, each value JSON, escaped, then cut at `MAX_VALUE_CHARS`.

    Escaping comes before cutting, so an escape is never split and the count says what was left out."""
    if not arguments:
        return "  (no arguments)"
    lines = []
    for name, value in arguments.items():
        shown = escape(json.dumps(value, ensure_ascii=False, default=str))
        lines.append(f"  {_cut(escape(str(name)), MAX_NAME_CHARS)} = {_cut(shown, MAX_VALUE_CHARS)}")
    return "\n".join(lines)


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    """A fingerprint of the full arguments (canonical JSON, SHA-256): what an approval is bound to."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
