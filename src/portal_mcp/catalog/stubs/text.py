"""Tool and parameter descriptions trimmed for stubs, and made safe inside docstrings.

Stubs are read by a model and paid for in tokens, so long descriptions are cut at a paragraph or sentence boundary
rather than mid-word, and never carried whole into a one-line summary.
"""

from __future__ import annotations

import inspect
import re

ELLIPSIS = "..."

# A sentence ends at . ! ? followed by whitespace, except after the abbreviations descriptions use all the time.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bex)[.!?](?=\s|$)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")


def clean(text: str) -> str:
    """Normalise whitespace: dedented (relative indentation kept, it structures lists and `Args:` sections),
    single spaces inside lines, at most one blank line between paragraphs."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "))
    lines = [_squash(line) for line in inspect.cleandoc(text).split("\n")]
    result: list[str] = []
    for line in lines:
        if line or (result and result[-1]):
            result.append(line)
    return "\n".join(result).strip()


def _squash(line: str) -> str:
    words = _SPACES.sub(" ", line).strip()
    return line[: len(line) - len(line.lstrip(" "))] + words if words else ""


def one_line(text: str, max_chars: int) -> str:
    """Whole leading sentences of `text` on one line, at most `max_chars` (hard-cut only when one is too long)."""
    flat = " ".join(clean(text).split())
    if len(flat) <= max_chars:
        return flat
    cut = 0
    for match in _SENTENCE_END.finditer(flat, 0, max_chars):
        cut = match.end()
    if cut:
        return flat[:cut]
    return _cut_at_word(flat, max_chars)


def summary(text: str, max_chars: int = 120) -> str:
    """The first sentence of the first paragraph, on one line."""
    first = clean(text).split("\n\n", 1)[0]
    flat = " ".join(first.split())
    match = _SENTENCE_END.search(flat)
    if match and match.end() < len(flat):
        flat = flat[: match.end()]
    return flat if len(flat) <= max_chars else _cut_at_word(flat, max_chars)


def trim(text: str, max_chars: int) -> str:
    """`text` cleaned and cut to about `max_chars` at the last paragraph, line or sentence boundary past half."""
    text = clean(text)
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    floor = max_chars // 2
    for boundary in ("\n\n", "\n"):
        at = head.rfind(boundary)
        if at >= floor:
            return head[:at].rstrip() + "\n" + ELLIPSIS
    ends = [match.end() for match in _SENTENCE_END.finditer(head) if match.end() >= floor]
    if ends:
        return head[: ends[-1]] + " " + ELLIPSIS
    return _cut_at_word(text, max_chars)


def _cut_at_word(flat: str, max_chars: int) -> str:
    head = flat[: max_chars - len(ELLIPSIS)]
    space = head.rfind(" ")
    if space > max_chars // 2:
        head = head[:space]
    return head.rstrip(" ,;:") + ELLIPSIS


def docstring(text: str, indent: str) -> str:
    """A triple-quoted docstring holding `text`, its continuation lines indented by `indent`."""
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    lines = body.split("\n")
    indented = [lines[0]] + [indent + line if line else "" for line in lines[1:]]
    closing = "\n" + indent if len(lines) > 1 else ""
    return f'{indent}"""{chr(10).join(indented)}{closing}"""'
