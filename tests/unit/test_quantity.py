"""Memory quantities as Kubernetes writes them, to bytes and back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain import quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128Mi", 128 * 2**20),
        ("1Gi", 2**30),
        ("2Ti", 2 * 2**40),
        ("1Pi", 2**50),
        ("1Ei", 2**60),
        ("4Ki", 4096),
        ("500M", 500_000_000),
        ("1G", 10**9),
        ("3k", 3000),
        ("2T", 2 * 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("1e9", 10**9),
        ("1E3", 1000),
        ("12345", 12345),
        ("1.5Gi", 3 * 2**29),
        ("0.5Ki", 512),
        ("+1Ki", 1024),
        (" 64Mi ", 64 * 2**20),
    ],
)
def test_to_bytes_reads_binary_decimal_and_exponent_quantities(text: str, expected: int) -> None:
    assert quantity.to_bytes(text) == expected


def test_to_bytes_of_an_int_is_that_many_bytes() -> None:
    assert quantity.to_bytes(1048576) == 1048576


def test_to_bytes_rounds_fractional_bytes_up() -> None:
    assert quantity.to_bytes("1500m") == 2  # 1.5 bytes
    assert quantity.to_bytes("1m") == 1
    assert quantity.to_bytes("0.1") == 1


@pytest.mark.parametrize("text", ["", "Mi", "12Q", "1gi", "1 Gi", "1K", "ten", "1Gi2", "0x10"])
def test_to_bytes_rejects_what_is_not_a_quantity_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a Kubernetes quantity \(e\.g\. 512Mi, 2Gi\)"):
        quantity.to_bytes(text)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (2**30, "1Gi"),
        (3 * 2**30, "3Gi"),
        (1536 * 2**20, "1536Mi"),
        (4096, "4Ki"),
        (2**20 + 1024, "1025Ki"),
        (1000, "1Mi"),
        (10**9, "954Mi"),  # 953.67Mi rounded up
        (2**20 + 1, "2Mi"),
    ],
)
def test_from_bytes_uses_the_largest_binary_unit_that_divides_else_mi_rounded_up(n: int, expected: str) -> None:
    assert quantity.from_bytes(n) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["Ki", "Mi", "Gi"]))
def test_whole_binary_quantities_round_trip_exactly(count: int, suffix: str) -> None:
    n = quantity.to_bytes(f"{count}{suffix}")
    assert quantity.to_bytes(quantity.from_bytes(n)) == n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**50))  # up to 1 PiB: any memory a node has
def test_from_bytes_never_gives_less_than_asked_and_at_most_one_mi_more(n: int) -> None:
    back = quantity.to_bytes(quantity.from_bytes(n))
    assert n <= back < n + 2**20
