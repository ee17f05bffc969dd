"""Text rules every output shares: the one cleaner of control characters.

A string scraped from a listing or typed by a person may carry line breaks, C0/C1 controls, zero-width
characters or bidirectional overrides. In a mail header a line break injects headers and a right-to-left
override disguises the Subject; in a page or a mail body they garble the text. Every place that puts such
a string on a single line (headers, names, titles, reasons) goes through ``one_line``; values that must be
exact (addresses, ids, URLs) are refused when ``has_control`` finds one."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line/paragraph separators, zero-width and direction marks
# (U+200B-U+200F), bidi embeddings and overrides (U+202A-U+202E), the Arabic letter mark (U+061C),
# word joiner and bidi isolates (U+2060-U+2069) and the byte-order mark.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def one_line(value: str | None) -> str:
    """``value`` as one line of display text: every control character becomes a space, runs of
    whitespace collapse, the ends are stripped. ``None`` gives ``""``."""
    if not value:
        return ""
    return " ".join(CONTROL.sub(" ", value).split())


def has_control(value: str) -> bool:
    """Whether ``value`` holds any character ``one_line`` would remove (line breaks included)."""
    return CONTROL.search(value) is not None


def trim(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis if cut (a subject,
    a summary, a quoted sentence)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "\u2026"
