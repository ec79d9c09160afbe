"""Facades for text: string, textwrap, csv, io (in memory only), html, difflib, pprint, urllib.parse, traceback."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Final

from portal_mcp.sandbox.facades.common import Builder, Services, public

__all__ = ["BUILDERS", "HINTS"]


def _string(services: Services) -> dict[str, Any]:
    # Not Formatter: it walks attributes of its arguments in C, past every guard (CVE-2023-41039).
    # Template only looks names up in a mapping.
    return public(
        "string",
        "ascii_letters ascii_lowercase ascii_uppercase digits hexdigits octdigits punctuation printable "
        "whitespace capwords Template",
    )


def _textwrap(services: Services) -> dict[str, Any]:
    return public("textwrap", "dedent indent wrap fill shorten TextWrapper")


def _csv(services: Services) -> dict[str, Any]:
    return public(
        "csv",
        "reader writer DictReader DictWriter Sniffer Dialect excel excel_tab unix_dialect QUOTE_ALL QUOTE_MINIMAL "
        "QUOTE_NONE QUOTE_NONNUMERIC Error register_dialect get_dialect list_dialects",
    )


def _io(services: Services) -> dict[str, Any]:
    return public("io", "StringIO BytesIO SEEK_SET SEEK_CUR SEEK_END UnsupportedOperation")


def _html(services: Services) -> dict[str, Any]:
    return public("html", "escape unescape")


def _html_parser(services: Services) -> dict[str, Any]:
    return public("html.parser", "HTMLParser")


def _difflib(services: Services) -> dict[str, Any]:
    return public(
        "difflib",
        "SequenceMatcher Differ HtmlDiff get_close_matches unified_diff context_diff ndiff restore "
        "IS_CHARACTER_JUNK IS_LINE_JUNK",
    )


def _pprint(services: Services) -> dict[str, Any]:
    pprint = importlib.import_module("pprint")
    members = public("pprint", "pformat saferepr isreadable isrecursive")
    write = services.write

    def pprint_(obj: Any, *args: Any, stream: Any = None, **kwargs: Any) -> None:
        """pprint.pprint(obj): pretty-print to the output."""
        write(pprint.pformat(obj, *args, **kwargs) + "\n")

    def pp(obj: Any, *args: Any, sort_dicts: bool = False, stream: Any = None, **kwargs: Any) -> None:
        write(pprint.pformat(obj, *args, sort_dicts=sort_dicts, **kwargs) + "\n")

    pprint_.__name__ = pprint_.__qualname__ = "pprint"
    members.update(pprint=pprint_, pp=pp)
    return members


def _urllib(services: Services) -> dict[str, Any]:
    return {}


def _urllib_parse(services: Services) -> dict[str, Any]:
    return public(
        "urllib.parse",
        "urlparse urlunparse urlsplit urlunsplit urljoin urldefrag urlencode quote quote_plus quote_from_bytes "
        "unquote unquote_plus unquote_to_bytes parse_qs parse_qsl ParseResult SplitResult DefragResult",
    )


def _traceback(services: Services) -> dict[str, Any]:
    # The agent's own lines only, as in the run's error report; never the portal's frames.
    describe = services.describe
    write = services.write

    def _current(exc: Any = None) -> BaseException | None:
        if isinstance(exc, BaseException):
            return exc
        return sys.exception()

    def as_traceback(exc: BaseException) -> str:
        headline, _, lines = describe(exc).partition("\n")
        return f"Traceback (most recent call last):\n{lines}\n{headline}\n" if lines else f"{headline}\n"

    def format_exc(limit: Any = None, chain: bool = True) -> str:
        current = _current()
        return "NoneType: None\n" if current is None else as_traceback(current)

    def print_exc(limit: Any = None, file: Any = None, chain: bool = True) -> None:
        write(format_exc())

    def format_exception(exc: Any, *rest: Any, **kwargs: Any) -> list[str]:
        current = _current(rest[0] if rest and isinstance(rest[0], BaseException) else exc)
        return [] if current is None else [as_traceback(current)]

    def print_exception(exc: Any, *rest: Any, **kwargs: Any) -> None:
        write("".join(format_exception(exc, *rest)))

    def format_exception_only(exc: Any, *rest: Any) -> list[str]:
        current = _current(rest[0] if rest and isinstance(rest[0], BaseException) else exc)
        return [] if current is None else [describe(current).partition("\n")[0] + "\n"]

    return {
        "format_exc": format_exc,
        "print_exc": print_exc,
        "format_exception": format_exception,
        "print_exception": print_exception,
        "format_exception_only": format_exception_only,
    }


BUILDERS: Final[dict[str, Builder]] = {
    "string": _string,
    "textwrap": _textwrap,
    "csv": _csv,
    "io": _io,
    "html": _html,
    "html.parser": _html_parser,
    "difflib": _difflib,
    "pprint": _pprint,
    "urllib": _urllib,
    "urllib.parse": _urllib_parse,
    "traceback": _traceback,
}

HINTS: Final[dict[str, dict[str, str]]] = {
    "string": {"Formatter": "use f-strings or str.format_map-free code: string.Template, or %-formatting"},
    "io": {
        "open": "there are no files in the sandbox; use io.StringIO(text) for text in memory",
        "FileIO": "there are no files in the sandbox; use io.BytesIO",
        "TextIOWrapper": "use io.StringIO(text)",
    },
    "pprint": {"PrettyPrinter": "use pprint.pformat(obj, width=...)"},
    "urllib": {"request": "there is no network in the sandbox; call the tools instead"},
}
