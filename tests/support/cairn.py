"""Cairn's processes for tests (they live in the harness, which the benchmarks share)."""

from harness.cairn import CairnProcesses

__all__ = ["CairnProcesses"]
