"""Counts as English: "1 file", "2 files", "1 copy", "3 copies"."""

from __future__ import annotations

_IRREGULAR = {"copy": "copies", "entry": "entries", "was": "were", "is": "are", "this": "these"}


def plural(n: int, word: str) -> str:
    """`word` as it reads after the number `n`."""
    return word if n == 1 else _IRREGULAR.get(word, word + "s")


def count(n: int, word: str) -> str:
    """`n` and `word`, agreeing: count(1, "file") == "1 file", count(2, "copy") == "2 copies"."""
    return f"{n} {plural(n, word)}"
