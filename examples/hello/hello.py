"""Three steps; each result is recorded, so a new attempt skips the ones already done."""

from __future__ import annotations

import time

from cairn.sdk import Context


def greet(name: str) -> str:
    return f"hello, {name}"


def count_letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def main(ctx: Context) -> dict[str, object]:
    name = (ctx.payload or {}).get("name", "world")
    greeting = ctx.step("greet", greet, name)
    letters = ctx.step("count", count_letters, greeting)
    stamp = ctx.step("stamp", time.time)
    return {"greeting": greeting, "letters": letters, "at": stamp}
