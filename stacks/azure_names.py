"""Azure's rules for the names and versions the aks stack sends, checked before anything is created.

The patterns and lengths are those Microsoft's Python SDKs check a request's path parameters and
model fields against (their `_validation` maps and `_SERIALIZER.url(...)` constraints), taken from
azure-mgmt-containerregistry 10.3.0 (API 2023-07-01), azure-mgmt-containerservice 33.0.0 (API
2024-09-01) and azure-mgmt-resource 23.1.1 (API 2022-09-01). Newer SDK generations dropped the
client-side checks; the service still applies them, only later, in the middle of `pulumi up`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """What Azure accepts for one kind of name."""

    what: str
    pattern: str
    min_length: int
    max_length: int
    allowed: str  # the pattern in words, for the error message

    def problem(self, value: str) -> str | None:
        """Why Azure would refuse `value`, or None."""
        if not self.min_length <= len(value) <= self.max_length:
            return (
                f"{json.dumps(value)} is {len(value)} characters; {self.what} has "
                f"{self.min_length}-{self.max_length} characters: {self.allowed}"
            )
        if not re.fullmatch(self.pattern, value):
            return f"{json.dumps(value)} is not {self.what}: {self.allowed}"
        return None


REGISTRY = NameRule(
    "an Azure Container Registry name", r"[a-zA-Z0-9]*", 5, 50, "letters and digits only"
)
MANAGED_CLUSTER = NameRule(
    "an AKS cluster name",
    r"[a-zA-Z0-9]|[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]",
    1,
    63,
    "letters, digits, '-' and '_', starting and ending with a letter or digit",
)
AGENT_POOL = NameRule(
    "an AKS agent pool name", r"[a-z][a-z0-9]{0,11}", 1, 12, "lowercase letters and digits, starting with a letter"
)
RESOURCE_GROUP = NameRule(
    "a resource group name", r"[-\w._()]+", 1, 90, "letters, digits, '-', '_', '.', '(' and ')'"
)
# ManagedCluster.kubernetesVersion: "<major.minor.patch> (e.g. 1.20.13) and <major.minor> (e.g.
# 1.20) are supported" (the SDK's field documentation; the service resolves <major.minor> to its
# latest GA patch).
KUBERNETES_VERSION = NameRule(
    "an AKS Kubernetes version", r"[0-9]+\.[0-9]+(\.[0-9]+)?", 3, 20, "<major.minor> (1.34) or <major.minor.patch> (1.34.2)"
)
# The SDKs publish no rule for locations (the regions a subscription may use are listed at run
# time, `az account list-locations`); the stack takes a region's name as that list's Name column
# spells it, lowercase letters and digits (westeurope, eastus2), which catches display names and
# typos such as "West Europe" or "west-europe" before Azure does.
LOCATION = NameRule(
    "an Azure region name", r"[a-z][a-z0-9]*", 4, 40, "lowercase letters and digits as `az account list-locations` names it (westeurope)"
)
