"""Kubernetes memory quantities (128Mi, 1Gi, 500M, 1e9) as bytes and back."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIX: dict[str, int | Decimal] = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": Decimal("0.001"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")


def to_bytes(quantity: int | str) -> int:
    """Bytes in a memory quantity, rounded up."""
    if isinstance(quantity, int):
        return quantity
    match = _QUANTITY.match(quantity.strip())
    if not match:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 512Mi, 2Gi)")
    number, suffix = match.groups()
    try:
        value = math.ceil(Decimal(number) * Decimal(_SUFFIX[suffix or ""]))
    except InvalidOperation as e:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 512Mi, 2Gi)") from e
    if value < 0:
        raise ValueError(f"{quantity!r} is negative: a memory quantity cannot be")
    return value


def from_bytes(n: int) -> str:
    """A readable quantity for n bytes: the largest binary unit that divides it, else Mi rounded up."""
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return f"{-(-n // 2**20)}Mi"  # integer ceiling: floats lose bytes for huge values
