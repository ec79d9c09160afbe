"""Descriptions trimmed for stubs: whole sentences, kept structure, valid docstrings."""

from __future__ import annotations

import ast

from portal_mcp.catalog.stubs.text import clean, docstring, one_line, summary, trim


def test_clean_dedents_squashes_spaces_and_keeps_list_structure() -> None:
    text = "  Hello   world.\n   \n\n\n    - item  one\n      - nested\n\tTabbed"
    assert clean(text) == "Hello world.\n\n- item one\n  - nested\nTabbed"


def test_summary_is_the_first_sentence_and_skips_abbreviations() -> None:
    assert summary("List files, e.g. logs. Slow on big folders.") == "List files, e.g. logs."
    assert (
        summary("First paragraph line\ncontinues here.\n\nSecond paragraph.") == "First paragraph line continues here."
    )
    assert summary("x" * 300, max_chars=20) == "x" * 17 + "..."


def test_one_line_keeps_whole_sentences_that_fit() -> None:
    assert one_line("One. Two. " + "Three is a much longer sentence. " * 5, 20) == "One. Two."


def test_trim_cuts_at_a_paragraph_or_sentence_boundary_past_half_the_budget() -> None:
    paragraphs = "First paragraph is here.\n\n" + "Second one. " * 10
    assert trim(paragraphs, 40) == "First paragraph is here.\n..."
    assert trim(paragraphs, 60) == "First paragraph is here.\n\nSecond one. Second one. ..."
    assert trim("Sentence number one. " * 10, 100) == ("Sentence number one. " * 4).strip() + " ..."


def test_docstrings_escape_quotes_and_backslashes_and_indent_continuation_lines() -> None:
    text = 'Line with """ and \\ and\nsecond line ending in "'
    source = f"def f():\n{docstring(text, '    ')}\n"
    assert ast.get_docstring(ast.parse(source).body[0]) == text  # type: ignore[arg-type]
