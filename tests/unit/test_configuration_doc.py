"""docs/configuration.md tells the truth: its table of the operator's and API's settings is the one
generated from the settings class, and every CAIRN_ variable the code reads is documented there."""

from __future__ import annotations

import re

from cairn.config import settings_table
from harness import config

DOC = config.REPO / "docs" / "configuration.md"


def test_the_settings_table_in_the_docs_is_generated_from_the_settings_class() -> None:
    text = DOC.read_text()
    start = text.index("-->\n", text.index("<!-- generated from cairn.config.Settings")) + 4
    end = text.index("<!-- end of generated table -->")
    assert text[start:end] == settings_table(), "run: python -m cairn.config, and paste it into docs/configuration.md"


def test_every_cairn_variable_the_code_reads_is_documented() -> None:
    names: set[str] = set()
    for top in ("operator/cairn", "harness", "hack", "tests/support", "bench"):
        for path in (config.REPO / top).rglob("*"):
            if path.suffix in (".py", ".sh", ".yaml"):
                names |= set(re.findall(r"CAIRN_[A-Z][A-Z_]*[A-Z]", path.read_text()))
    documented = set(re.findall(r"CAIRN_[A-Z][A-Z_]*[A-Z]", DOC.read_text()))
    assert len(names) >= 20, sorted(names)
    assert names <= documented, f"undocumented: {sorted(names - documented)}"
