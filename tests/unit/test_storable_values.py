"""Values PostgreSQL refuses are refused first, with the field and the fix (the API answers 422 with
this message: tests/e2e/test_checkpoint_api.py), and everything it can store passes, encoded as it is
stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.domain.storable import Unstorable, check_text, storable_json

REFUSED = [
    ("NaN", json.loads('{"a": NaN}'), "a number JSON cannot carry"),
    ("Infinity", json.loads("[-Infinity]"), "a number JSON cannot carry"),
    ("1e999 overflows", json.loads('{"a": 1e999}'), "like 1e999"),
    ("U+0000 in a value", json.loads('{"a": ["x\\u0000y"]}'), "U+0000"),
    ("U+0000 in a key", json.loads('{"a\\u0000": 1}'), "U+0000"),
    ("a lone high surrogate", json.loads('"\\ud800"'), "lone UTF-16 surrogate"),
    ("a lone low surrogate deep down", json.loads('{"a": {"b": ["ok", "\\udc00"]}}'), "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize(("case", "value", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_what_postgresql_cannot_store_is_refused_naming_the_field(case: str, value: Any, message: str) -> None:
    with pytest.raises(Unstorable) as e:
        storable_json(value, "the result of step 's#0'")
    assert message in str(e.value) and "the result of step 's#0'" in str(e.value), case


def test_a_surrogate_pair_and_other_escaped_characters_are_stored() -> None:
    value = json.loads(
        '{"emoji": "\\ud83d\\ude00", "accent": "\\u00e9", "tab": "\\t", "big": 123456789012345678901234567890}'
    )
    text = storable_json(value, "x")
    assert json.loads(text) == value and text.isascii()


def test_a_control_character_in_a_key_other_than_nul_is_left_to_the_key_check() -> None:
    check_text("a\u0007b", "the step key")  # _key refuses it with its own message
    with pytest.raises(Unstorable):
        check_text("a\x00b", "the step key")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=20,
    )
)
def test_every_json_value_without_nul_or_lone_surrogates_is_stored_as_it_reads(value: Any) -> None:
    storable = not any(ch == "\x00" or 0xD800 <= ord(ch) <= 0xDFFF for s in _strings(value) for ch in s)
    if storable:
        assert json.loads(storable_json(value, "x")) == value
    else:
        with pytest.raises(Unstorable):
            storable_json(value, "x")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    return []
