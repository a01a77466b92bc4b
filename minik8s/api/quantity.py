"""Resource quantities (``100m``, ``128Mi``, ``2e3``) as exact fractions.

Validation, the scheduler's fit checks and the kubelet's cgroup limits must all agree on
what a quantity means; doing the arithmetic on ``Fraction`` keeps ``0.1 + 0.2`` CPUs equal
to ``300m`` and avoids float drift when summing many requests on a node. The rounding
helpers follow Kubernetes' ``Quantity.Value()``/``MilliValue()``, which round up so that a
request is never under-counted."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
           "Ei": 2 ** 60}
_DECIMAL = {"n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000),
            "": Fraction(1), "k": Fraction(10 ** 3), "M": Fraction(10 ** 6),
            "G": Fraction(10 ** 9), "T": Fraction(10 ** 12), "P": Fraction(10 ** 15),
            "E": Fraction(10 ** 18)}

# Anchored with \Z so a trailing newline is rejected too.
# sign, digits with an optional fraction (either side may be empty but not both), suffix.
_QUANTITY = re.compile(
    r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?\Z")


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a Kubernetes quantity; ``ValueError`` when it does not parse.

    JSON numbers are accepted too, since manifests often write ``cpu: 1``."""
    if isinstance(value, bool):
        raise ValueError(f"quantity must be a string or a number, not {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"quantity is not finite: {value!r}")
        return Fraction(str(value))
    if not isinstance(value, str):
        raise ValueError(f"quantity must be a string, not {type(value).__name__}")
    m = _QUANTITY.match(value)
    if not m:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    number = Fraction(m["num"])
    suffix = m["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def value_of(value: str | int | float) -> int:
    """Whole units, rounded up: bytes of memory, whole CPUs (``Quantity.Value()``)."""
    return math.ceil(parse_quantity(value))


def milli_value_of(value: str | int | float) -> int:
    """Thousandths, rounded up: millicores of CPU (``Quantity.MilliValue()``)."""
    return math.ceil(parse_quantity(value) * 1000)


__all__ = ["parse_quantity", "value_of", "milli_value_of"]
