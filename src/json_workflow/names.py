"""File names are bytes on Linux: how json-workflow shows them to people and keeps them in its store.

Python gives a name that is not UTF-8 (a Latin-1 name from a Samba or FTP client) as a str with
surrogate escapes, which every os call takes back, but which UTF-8 text (a log line, a reason file,
SQLite) refuses. `shown` is its text for people: printable, and reversible by `unshown`, so a name
kept as text still leads back to the file.
"""

from __future__ import annotations

import os
import re

_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode escaped it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` for a terminal: what it would hide or act on (control, format, undecodable) as \\xNN or \\uNNNN.

    Unlike `shown`, a backslash stays as it is: for text people wrote (a rule, a pattern), not a name to find again.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def shown(name: str) -> str:
    """`name` as printable text: undecodable bytes as \\xNN, invisible characters as \\xNN, \\uNNNN or \\UNNNNNNNN."""
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in name)


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code == "\\":
        return "\\"
    value = int(code[1:], 16)
    return chr(0xDC00 + value) if code[0] == "x" and value >= 0x80 else chr(value)


def unshown(text: str) -> str:
    """The name that `shown` turned into `text`."""
    return _ESCAPED.sub(_unescape, text) if "\\" in text else text


def stored(path: str) -> str | bytes:
    """`path` as the store keeps it: text, or its bytes when it is not UTF-8 (SQLite text must be)."""
    if path.isascii():
        return path
    try:
        path.encode()
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def from_store(value: str | bytes) -> str:
    """The path that `stored` kept."""
    return os.fsdecode(value) if isinstance(value, bytes) else value
