"""cert-manager, installed from its upstream release (`jupyterhub.https.installCertManager`).

The static install its release publishes (CRDs, controller, cainjector, webhook in namespace
`cert-manager`), at the version versions.env pins, applied as one yaml/v2 ConfigFile: the
kubernetes provider fetches the manifest and orders its CRDs first. The hub's Issuer and
Certificate depend on this component, so they are applied once cert-manager's webhook is up.
Also the cert-manager API vocabulary the hub component speaks.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from vocab.versions import CERT_MANAGER_MANIFEST

API_VERSION = "cert-manager.io/v1"
ISSUER_KIND = "Issuer"
CERTIFICATE_KIND = "Certificate"
# Asks cert-manager to write a temporary self-signed certificate into the Secret at once, so that
# the proxy can start (and answer the ACME server's challenges) before the real one is issued.
ISSUE_TEMPORARY_CERTIFICATE = "cert-manager.io/issue-temporary-certificate"
# The label cert-manager puts on its HTTP-01 solver pods.
HTTP01_SOLVER_LABEL = "acme.cert-manager.io/http01-solver"


class CertManager(pulumi.ComponentResource):
    ready: list[pulumi.Resource]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cert_manager:CertManager", name, None, opts)
        manifest = k8s.yaml.v2.ConfigFile(f"{name}-release", file=CERT_MANAGER_MANIFEST, opts=pulumi.ResourceOptions(parent=self))
        self.ready = [manifest]
        self.register_outputs({})
