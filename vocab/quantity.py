"""Kubernetes resource quantities (`500m`, `2`, `512Mi`, `1e3`) read with the standard library.

The settings, the hub's config document and the cluster manager all compare quantities. The
kubernetes client's `parse_quantity` gives the same answers (tests/unit/test_config.py holds the
two to them), but importing it loads the whole client, its dynamic client and a JSON-schema
validator: about two seconds of every `pulumi preview` and `pulumi up` on a 2-core machine
(docs/benchmarks.md), for a function of a dozen lines. The cluster manager runs before any
virtualenv exists, so it needs this one anyway.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Kubernetes' quantity suffixes: binary (powers of 1024), decimal SI, or a decimal exponent.
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^(?P<number>[+-]?(\d+\.?\d*|\.\d+))(?P<suffix>[KMGTPE]i|[eE][+-]?\d+|[numkMGTPE]?)$")


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `24683584Ki`, `1e3`) as a number of its unit."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = Decimal(match["number"]), match["suffix"]
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number.scaleb(int(suffix[1:]))
    return number * _DECIMAL[suffix]
