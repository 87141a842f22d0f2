"""File names as bytes: their printable, reversible text and their form in the store (pure)."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from json_workflow.names import from_store, shown, stored, unshown

# Any name Linux allows: bytes other than NUL and "/".
names = st.binary(min_size=1, max_size=60).filter(lambda b: b"\0" not in b and b"/" not in b).map(os.fsdecode)


@given(names)
def test_shown_is_printable_text_that_leads_back_to_the_name(name):
    text = shown(name)
    assert text.isprintable()
    text.encode("utf-8")  # never raises: a log line, a reason file and SQLite take it
    assert unshown(text) == name


@given(st.text(min_size=1, max_size=40))
def test_any_text_a_name_can_hold_is_shown_reversibly(name):
    name = name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert unshown(shown(name)) == name


def test_a_plain_name_is_shown_as_it_is():
    assert shown("RANK/5903771 (copy).json") == "RANK/5903771 (copy).json"
    assert shown("Café Ünïcode.json") == "Café Ünïcode.json"


def test_bytes_that_are_not_utf8_and_invisible_characters_are_escaped():
    assert shown(os.fsdecode(b"caf\xe9.json")) == "caf\\xe9.json"
    assert shown("a\nb\u202ec\u200b.json") == "a\\x0ab\\u202ec\\u200b.json"
    assert shown("back\\slash.json") == "back\\\\slash.json"


@given(names)
def test_the_store_keeps_any_path_exactly(name):
    value = stored("/data/JSON/" + name)
    if isinstance(value, str):
        value.encode("utf-8")
    assert from_store(value) == "/data/JSON/" + name
