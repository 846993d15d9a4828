"""Escape sequences and FT formatting commands rendered to plain text, and escaping back."""

from __future__ import annotations

import pytest

from mappings.escapes import MAX_BLANK_LINES, MAX_COLUMNS, escape, render_text
from mappings.header import Delimiters

STD = Delimiters()
CUSTOM = Delimiters("#", "!", "$", "%", "@", "+")  # MSH#!$%@+


@pytest.mark.parametrize(("value", "expected"), [
    ("plain text", "plain text"),
    ("A\\F\\B", "A|B"),
    ("A\\S\\B", "A^B"),
    ("A\\T\\B", "A&B"),
    ("A\\R\\B", "A~B"),
    ("A\\E\\B", "A\\B"),
    ("A\\E\\\\F\\B", "A\\|B"),
    ("\\H\\IMPORTANT\\N\\ text", "IMPORTANT text"),
    ("\\X41\\\\X4243\\", "ABC"),
    ("caf\\XC3A9\\", "café"),
    ("line1\\X0D0A\\line2", "line1\nline2"),
    ("before\\Zlocal\\after", "beforeafter"),
    ("a\\C2842\\b\\M248442\\c", "abc"),
    ("L1\\.br\\L2", "L1\nL2"),
    ("L1\\.sp\\L2", "L1\n\nL2"),
    ("L1\\.sp 2\\L2", "L1\n\n\nL2"),
    ("L1\\.sp2\\L2", "L1\n\n\nL2"),
    ("L1\\.ce\\TITLE", "L1\nTITLE"),
    ("A\\.sk 3\\B", "A   B"),
    ("A\\.sk\\B", "A B"),
    ("\\.fi\\A\\.nf\\B", "AB"),
    ("H\\.in 4\\a\\.br\\b\\.in -2\\c\\.br\\d", "H\n    a\n    b\n  c\n  d"),
    ("H\\.in +2\\a\\.in +2\\b", "H\n  a\n    b"),
    ("H\\.ti 3\\a\\.br\\b", "H\n   a\nb"),
    ("H\\.in 2\\a\\.ti 2\\b\\.br\\c", "H\n  a\n    b\n  c"),
    ("C:\\temp folder", "C:\\temp folder"),
    ("LEFT\\RIGHT\\ side", "LEFT\\RIGHT\\ side"),
    ("unterminated \\.br", "unterminated \\.br"),
])
def test_render_standard_delimiters(value: str, expected: str) -> None:
    assert render_text(value, STD) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("A%F%B%S%C%T%D%R%E%E%F%P%", "A#B!C@D$E%F+"),
    ("L1%.br%L2", "L1\nL2"),
    ("x\\.br\\y", "x\\.br\\y"),  # backslash is plain text when % is the escape character
])
def test_render_custom_delimiters(value: str, expected: str) -> None:
    assert render_text(value, CUSTOM) == expected


def test_hex_uses_message_charset_then_latin1() -> None:
    assert render_text("\\XE9\\", STD, "latin-1") == "é"
    assert render_text("\\XE9\\", STD, "utf-8") == "é"  # not valid UTF-8 -> latin-1
    assert render_text("\\XE28093\\", STD, "utf-8") == "–"


def test_no_escape_character() -> None:
    d = Delimiters("|", "^", "~", "", "&", "")
    assert render_text("A\\F\\B", d) == "A\\F\\B"
    assert escape("A|B^C", d) == "A B C"


@pytest.mark.parametrize("delims", [STD, CUSTOM])
def test_escape_round_trips(delims: Delimiters) -> None:
    text = "a|b^c&d~e\\f#g!h$i%j@k+l"
    assert render_text(escape(text, delims), delims) == text


def test_escape_line_breaks() -> None:
    assert escape("a\r\nb\nc", STD) == "a b c"
    assert escape("a\nb", STD, newline="\\.br\\") == "a\\.br\\b"
    assert escape("tab\there\x07", STD) == "tab\there "


@pytest.mark.parametrize(("value", "expected"), [
    ("A\\.sp 99999999999999999999\\B", "A" + "\n" * (1 + MAX_BLANK_LINES) + "B"),
    ("A\\.sp 10000000\\B", "A" + "\n" * (1 + MAX_BLANK_LINES) + "B"),
    ("A\\.sp 20\\B", "A" + "\n" * 21 + "B"),
    ("A\\.sk 99999999999999999999\\B", "A" + " " * MAX_COLUMNS + "B"),
    ("A\\.sk -99999999999999999999\\B", "AB"),
    ("H\\.in 1000000000\\a\\.br\\b", "H\n" + " " * MAX_COLUMNS + "a\n" + " " * MAX_COLUMNS + "b"),
    ("H\\.in 60\\\\.in +60\\a\\.in -30\\b", "H\n\n" + " " * MAX_COLUMNS + "a\n" + " " * 50 + "b"),
    ("H\\.in -99999999999999999999\\a", "H\na"),
    ("H\\.in 70\\\\.ti 99999999999999999999\\a\\.br\\b", "H\n\n" + " " * 80 + "a\n" + " " * 70 + "b"),
])
def test_format_counts_are_capped(value: str, expected: str) -> None:
    assert (MAX_BLANK_LINES, MAX_COLUMNS) == (20, 80)
    assert render_text(value, STD) == expected


@pytest.mark.parametrize("unit", [
    "\\.br\\x", "\\.sp 99999\\", "\\.sp99\\", "\\.sk 99999\\", "\\.sk99\\", "\\.in +99\\x",
    "\\.ti 99\\x", "\\.in99\\\\.sk99\\", "\\.br\\\\.sk99\\", "\\.br\\\\F\\", "\\.sp\\x\\.sk\\",
])
def test_rendered_text_stays_within_14_times_the_value(unit: str) -> None:
    # Rendering cost follows the size of the value whatever the counts say (module docstring):
    # here with the indent at its cap first, so every line starts with a full indent.
    value = "\\.in 80\\" + unit * 2000
    assert len(render_text(value, STD)) <= 14 * len(value)
