"""Azure's naming rules (stacks/azure_names.py), as the SDKs' validation maps state them."""

from __future__ import annotations

import pytest

from stacks.azure_names import AGENT_POOL, KUBERNETES_VERSION, MANAGED_CLUSTER, REGISTRY, RESOURCE_GROUP


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        (REGISTRY, "mlplatformacr01"),
        (MANAGED_CLUSTER, "mlplatform-aks_1"),
        (AGENT_POOL, "gpu"),
        (AGENT_POOL, "a100pool1234"),
        (RESOURCE_GROUP, "rg-ml.platform(1)"),
        (KUBERNETES_VERSION, "1.34"),
        (KUBERNETES_VERSION, "1.34.2"),
    ],
)
def test_names_azure_accepts(rule, value):
    assert rule.problem(value) is None


@pytest.mark.parametrize(
    ("rule", "value", "words"),
    [
        (REGISTRY, "trainer-image-acr1234567", "letters and digits only"),
        (REGISTRY, "acr", "5-50 characters"),
        (MANAGED_CLUSTER, "-aks", "starting and ending with a letter or digit"),
        (MANAGED_CLUSTER, "a" * 64, "1-63 characters"),
        (AGENT_POOL, "gpu-pool", "lowercase letters and digits"),
        (AGENT_POOL, "1gpu", "starting with a letter"),
        (AGENT_POOL, "gpupoolnumber1", "1-12 characters"),
        (RESOURCE_GROUP, "rg with spaces", "resource group name"),
        (KUBERNETES_VERSION, "v1.34", "<major.minor>"),
    ],
)
def test_names_azure_refuses_say_why(rule, value, words):
    assert words in (rule.problem(value) or "")
