"""What PostgreSQL can store. JSON read by Python's json module may carry NaN or ±Infinity (1e999
overflows to it), a lone UTF-16 surrogate or U+0000; jsonb and text refuse all four. The API's doors
(a 422) and the operator (a TaskRun's spec.payload: InvalidPayload) refuse them first, naming the field
and the fix, so that nothing is left to fail in the database."""

from __future__ import annotations

import json
from typing import Any


class Unstorable(ValueError):
    """A value PostgreSQL would refuse; the message names it (`what`) and says what to send instead."""


def storable_json(value: Any, what: str) -> str:
    """`value` as the compact JSON stored for it (ASCII), or Unstorable saying what PostgreSQL would refuse."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError as e:
        raise Unstorable(
            f"{what} holds a number JSON cannot carry (NaN, Infinity, or one so large it overflows, "
            "like 1e999): send it as a string, or null",
        ) from e
    if "\\u" in text:  # only a string with an escaped character can hide U+0000 or a lone surrogate
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                check_text(item, what)
            elif isinstance(item, dict):
                for key, inner in item.items():
                    check_text(key, what)
                    stack.append(inner)
            elif isinstance(item, list):
                stack.extend(item)
    return text


def check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise Unstorable(
            f"{what} contains the character U+0000, which PostgreSQL cannot store: remove it, or encode "
            "binary data (e.g. base64)",
        )
    try:
        text.encode()
    except UnicodeEncodeError as e:
        raise Unstorable(
            f"{what} contains a lone UTF-16 surrogate ({text[e.start]!r}), which is not a character: "
            "send surrogates only in pairs",
        ) from e
