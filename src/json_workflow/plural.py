"""Counts as English: "1 file", "2 files", "1 copy", "3 copies", "1 file waits", "2 files wait"."""

from __future__ import annotations

_IRREGULAR = {"copy": "copies", "entry": "entries", "is": "are", "was": "were", "this": "these"}


def plural(n: int, word: str, many: str | None = None) -> str:
    """`word` as it reads after the number `n`; `many` when its form for several is not word + s (a verb)."""
    if n == 1:
        return word
    return many if many is not None else _IRREGULAR.get(word, word + "s")


def count(n: int, word: str, many: str | None = None) -> str:
    """`n` and `word`, agreeing: count(1, "file") == "1 file", count(2, "copy") == "2 copies"."""
    return f"{n} {plural(n, word, many)}"
