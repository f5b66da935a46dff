"""The value types every part of the stack config uses: checked strings, taints, resources, volumes.

Each settings module (cluster, jupyterhub, mnist, images) builds on these; a value that breaks its
type's rule fails with a ValueError whose message says what is allowed, which stacks/config.py
turns into one line naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import urlparse

from vocab.quantity import quantity
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from stacks.cluster import NodeCapacity

# The Pulumi config namespace of every key: `mlplatform:cluster`, `mlplatform:jupyterhub`, ...
NAMESPACE = "mlplatform"

ServiceType = Literal["ClusterIP", "LoadBalancer", "NodePort"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
# What becomes of a capability's volumes when the stack is destroyed or a change would delete,
# replace or strand them (stacks/retention.py).
DataRetention = Literal["keep", "delete"]
TAINT_EFFECTS: tuple[str, ...] = get_args(TaintEffect)


_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _label_value(value: str) -> str:
    if not value or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            "must be a Kubernetes label value: 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError("must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, at most 63 characters")
    return value


def _quantity(value: Any) -> str:
    text = str(value)
    try:
        amount = quantity(text)
    except ValueError:
        raise ValueError("must be a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi") from None
    if amount < 0:
        raise ValueError("must not be negative")
    return text


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":")
    if "@sha256:" in value:
        return value
    if not name or "/" in tag or not tag or tag == "latest":
        raise ValueError("must be pinned by tag or digest (repository:tag, not :latest)")
    return value


_REGISTRY = re.compile(r"^(?P<host>[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?)(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def _registry(value: str) -> str:
    match = _REGISTRY.match(value)
    host = match.group("host") if match else ""
    # Docker's rule for telling a registry host from the first part of an image path.
    if not match or not ("." in host or ":" in host or host == "localhost"):
        raise ValueError(
            "must be a registry host with an optional path, such as mirror.example.com or "
            "registry.example.com:5000/upstream (no scheme, no tag)"
        )
    return value


_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise ValueError("must be a DNS name such as notebooks.example.com: lowercase letters, digits, '-' and '.', no scheme or port")
    return value


def _dns_subdomain(value: str) -> str:
    """An object name such as a Secret's: the DNS-1123 subdomain rule (the host name rule, read as such)."""
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise ValueError("must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253 characters")
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("must be a CIDR block such as 203.0.113.0/24") from None
    return value


def _data_url(value: str) -> str:
    url = urlparse(value)
    if not (url.scheme in ("http", "https") and url.netloc) and not (url.scheme == "file" and not url.netloc and url.path.startswith("/")):
        raise ValueError("must be an http(s):// URL or a file:///absolute/path in the trainer image")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
DataUrl = Annotated[str, AfterValidator(_data_url)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Hostname = Annotated[str, AfterValidator(_hostname)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]
Registry = Annotated[str, AfterValidator(_registry)]
Count = Annotated[int, Field(ge=0)]


class Taint(BaseModel):
    """A node taint written `key=value:Effect` (or `key:Effect`)."""

    model_config = ConfigDict(frozen=True)
    key: str
    value: str | None
    effect: str

    @classmethod
    def parse(cls, text: Any) -> Taint:
        if isinstance(text, Taint):
            return text
        if not isinstance(text, str):
            raise ValueError("must be a string key=value:Effect")
        spec, _, effect = text.rpartition(":")
        key, has_value, value = spec.partition("=")
        if (
            not spec
            or effect not in TAINT_EFFECTS
            or not _QUALIFIED_NAME.match(key)
            or (has_value and not (value and _LABEL_VALUE.match(value)))
        ):
            raise ValueError(f"must be key=value:Effect or key:Effect with Effect one of {', '.join(TAINT_EFFECTS)}")
        return cls(key=key, value=value if has_value else None, effect=effect)

    def __str__(self) -> str:
        value = f"={self.value}" if self.value is not None else ""
        return f"{self.key}{value}:{self.effect}"


ParsedTaint = Annotated[Taint, BeforeValidator(Taint.parse)]


class Settings(BaseModel):
    """Base of every settings object: frozen, camelCase keys as in stack config, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


def _only_with(key: str, what: str, actual: str) -> str:
    return f"{key}: only used with {what}, not {actual}"


def _source_ranges_problems(key: str, service_type: str, ranges: tuple[str, ...]) -> Iterator[str]:
    if ranges and service_type != "LoadBalancer":
        yield _only_with(f"{key}.loadBalancerSourceRanges", "serviceType LoadBalancer", service_type)


class Resources(Settings):
    """A container's CPU and memory: requests (what the scheduler reserves) and limits."""

    cpu_request: Quantity | None = Field(None, description="CPU reserved for it")
    memory_request: Quantity | None = Field(None, description="memory reserved for it")
    cpu_limit: Quantity | None = Field(None, description="CPU it may use at most (throttled above)")
    memory_limit: Quantity | None = Field(None, description="memory it may use at most (killed above)")

    def manifest(self) -> dict[str, dict[str, str]]:
        """A container's `resources`, camelCase as the API spells it."""
        found: dict[str, dict[str, str]] = {}
        for kind in ("requests", "limits"):
            values = {r: getattr(self, f"{r}_{kind[:-1]}") for r in ("cpu", "memory")}
            values = {r: v for r, v in values.items() if v is not None}
            if values:
                found[kind] = values
        return found

    def problems(self, key: str, node: NodeCapacity | None) -> Iterator[str]:
        """Requests above limits, and requests no node could hold (when `node`, its capacity, is known)."""
        for resource in ("cpu", "memory"):
            request, limit = getattr(self, f"{resource}_request"), getattr(self, f"{resource}_limit")
            if request and limit and quantity(request) > quantity(limit):
                yield f"{key}.{resource}Request: {request} must be <= {resource}Limit ({limit})"
            if node is not None:
                yield from node.problems(f"{key}.{resource}Request", resource, request)


def resources(**values: str) -> Any:
    """The type of a Resources setting that defaults to `values` (cpu_request="100m", ...).

    A value given in stack config is laid over the defaults, key by key, so that
    `pulumi config set --path mnist.resources.Worker.memoryLimit 8Gi` keeps the Worker's requests;
    `null` removes a default.
    """
    defaults = {to_camel(k): v for k, v in values.items()}

    def over_defaults(given: Any) -> Any:
        if isinstance(given, Mapping):
            return {**defaults, **{to_camel(str(k)): v for k, v in given.items()}}
        return given

    return Annotated[
        Resources,
        BeforeValidator(over_defaults),
        Field(default_factory=lambda: Resources(**values), json_schema_extra={"shown_default": _shown(values)}),
    ]


def _shown(values: Mapping[str, str]) -> str:
    return ", ".join(f"{to_camel(k)} {v}" for k, v in values.items())




class Storage(Settings):
    size: Quantity = Field("10Gi", description="the claim's size")
    storage_class: str | None = Field(None, description="the StorageClass (default: the cluster's default class)")


class SharedStorage(Storage):
    """A ReadWriteMany volume, which a cluster's default class often cannot serve."""

    storage_class: str | None = Field(
        None,
        description="the StorageClass (default: one that serves ReadWriteMany, on aks `azurefile-csi`; "
        "required on an existing cluster)",
    )
