"""The chaos run shares the fault suite's fixture that restarts Cairn with fault points armed."""

from tests.e2e.test_faults import faulty

__all__ = ["faulty"]
