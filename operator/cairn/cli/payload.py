"""The payload of a new run: JSON text from an option or a file, checked before anything is sent."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cairn.api.common import PAYLOAD_MAX_BYTES
from cairn.cli.errors import CliError, ExitCode

_EXCERPT = 60  # characters of the offending line shown either side of the error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def excerpt(text: str, lineno: int, colno: int) -> str:
    """The line holding the error with a caret under the column (a window of it, if the line is long)."""
    lines = text.splitlines() or [""]
    line = lines[min(lineno, len(lines)) - 1].expandtabs(1)
    start = max(0, colno - 1 - _EXCERPT)
    shown = line[start : colno - 1 + _EXCERPT]
    prefix = "…" if start > 0 else ""
    suffix = "…" if colno - 1 + _EXCERPT < len(line) else ""
    caret = " " * (len(prefix) + colno - 1 - start) + "^"
    return f"    {prefix}{shown}{suffix}\n    {caret}"


def parse_payload(text: str, source: str) -> str:
    """`text` as compact JSON, or a CliError saying where (line, column, character position) it breaks."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise CliError(
            ExitCode.INVALID,
            f"{source} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno} (character {e.pos})\n"
            + excerpt(text, e.lineno, e.colno),
        ) from e
    except ValueError as e:
        raise CliError(ExitCode.INVALID, f"{source} is not valid JSON: {e}") from e
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    size = len(compact.encode())
    if size > PAYLOAD_MAX_BYTES:
        raise CliError(
            ExitCode.INVALID,
            f"{source} is {size} bytes (compacted), over the payload cap of {PAYLOAD_MAX_BYTES} bytes",
            hint="pass large inputs by reference, e.g. a URL",
        )
    return compact


def read_payload(payload: str | None, payload_file: str | None) -> str | None:
    """The payload from --payload or --payload-file (`-` reads standard input), checked; None if neither."""
    if payload is not None and payload_file is not None:
        raise CliError(ExitCode.INVALID, "give either --payload or --payload-file, not both")
    if payload is not None:
        return parse_payload(payload, "the payload")
    if payload_file is None:
        return None
    if payload_file == "-":
        return parse_payload(sys.stdin.read(), "the payload from standard input")
    try:
        text = Path(payload_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(ExitCode.INVALID, f"cannot read the payload file {payload_file}: {e}") from e
    return parse_payload(text, f"the payload file {payload_file}")
