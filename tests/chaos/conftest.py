"""The chaos run shares the end-to-end suite's fixtures: a namespace with Cairn running, and the fault
suite's restart of Cairn with fault points armed."""

from tests.e2e.conftest import ns
from tests.e2e.test_faults import faulty

__all__ = ["faulty", "ns"]
