"""HTTPS for the hub (`jupyterhub.https`): the config's refusals, and what each
mode declares, under mocks."""

from __future__ import annotations

import base64
import copy
import datetime
import json
import secrets
import ssl
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import cert_manager, tls
from components.hub_config import document as hub_config
from components.cluster import Scheduling
from components.jupyterhub import JupyterHub, JupyterHubArgs
from vocab.versions import CERT_MANAGER_MANIFEST, PINS
from program import Deployment, RecordingMocks, aks_stack, example_stack, is_secret, reveal, run_program
from stacks import ConfigError, parse
from stacks.jupyterhub import JupyterHubSettings
from test_jupyterhub import build
from validation import Invalid, validate

CALLBACK = "https://notebooks.example.com/hub/oauth_callback"


def refused(config: dict[str, Any], secrets: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(config, frozenset(secrets))
    return str(caught.value).splitlines()


def hub(**changes: Any) -> dict[str, Any]:
    """The dev stack with these jupyterhub keys replaced."""
    config = copy.deepcopy(example_stack("dev"))
    config["jupyterhub"].update(changes)
    return config


def azuread(https: dict[str, Any] | None, callback: str = CALLBACK, service_type: str = "LoadBalancer") -> tuple[dict, tuple]:
    """The aks example with another `https` setting and callback."""
    config, secrets = aks_stack()
    config = copy.deepcopy(config)
    if https is None:
        config["jupyterhub"].pop("https")
    else:
        config["jupyterhub"]["https"] = https
    config["jupyterhub"]["auth"]["callbackUrl"] = callback
    config["jupyterhub"]["serviceType"] = service_type
    return config, secrets


LETSENCRYPT = {"type": "letsencrypt", "hosts": ["notebooks.example.com"], "contactEmail": "admin@example.com"}

# --- the config's refusals, each naming its key --------------------------------------------------

REFUSALS = {
    "a LoadBalancer without https": (
        hub(serviceType="LoadBalancer", https=None), "mlplatform:jupyterhub.https: required with jupyterhub.serviceType LoadBalancer"
    ),
    "a NodePort without https": (
        hub(serviceType="NodePort", https=None), "mlplatform:jupyterhub.https: required with jupyterhub.serviceType NodePort"
    ),
    "secret without its name": (hub(https={"type": "secret"}), "mlplatform:jupyterhub.https.secretName: required with https.type secret"),
    "a secret name with another type": (
        hub(https={"type": "selfSigned", "secretName": "mine"}),
        "mlplatform:jupyterhub.https.secretName: only used with https.type secret, not selfSigned",
    ),
    "letsencrypt without hosts": (
        hub(serviceType="LoadBalancer", https={**LETSENCRYPT, "hosts": []}),
        "mlplatform:jupyterhub.https.hosts: required with https.type letsencrypt",
    ),
    "letsencrypt with two hosts": (
        hub(serviceType="LoadBalancer", https={**LETSENCRYPT, "hosts": ["a.example.com", "b.example.com"]}),
        "mlplatform:jupyterhub.https.hosts: letsencrypt takes one host here, not 2",
    ),
    "letsencrypt without an e-mail address": (
        hub(serviceType="LoadBalancer", https={k: v for k, v in LETSENCRYPT.items() if k != "contactEmail"}),
        "mlplatform:jupyterhub.https.contactEmail: null must be an e-mail address",
    ),
    "letsencrypt with a plain-HTTP ACME server": (
        hub(serviceType="LoadBalancer", https={**LETSENCRYPT, "acmeServer": "http://acme.example.com/directory"}),
        'mlplatform:jupyterhub.https.acmeServer: "http://acme.example.com/directory" must be an https:// ACME directory URL',
    ),
    "letsencrypt behind a ClusterIP Service": (
        hub(https=LETSENCRYPT), "mlplatform:jupyterhub.https.type: letsencrypt needs jupyterhub.serviceType LoadBalancer, not ClusterIP"
    ),
    "cert-manager asked for without letsencrypt": (
        hub(https={"type": "selfSigned", "installCertManager": True}),
        "mlplatform:jupyterhub.https.installCertManager: only used with https.type letsencrypt, not selfSigned",
    ),
    "offload without its public host": (
        hub(serviceType="LoadBalancer", https={"type": "offload"}), "mlplatform:jupyterhub.https.hosts: required with https.type offload"
    ),
    "a Secret name that is no object name": (
        hub(https={"type": "secret", "secretName": "Hub_TLS"}),
        'mlplatform:jupyterhub.https.secretName: "Hub_TLS" must be a DNS-1123 subdomain',
    ),
    "a URL for a host": (
        hub(https={"type": "selfSigned", "hosts": ["https://notebooks.example.com"]}),
        'mlplatform:jupyterhub.https.hosts[0]: "https://notebooks.example.com" must be a DNS name',
    ),
    "https without a type": (hub(https={}), "mlplatform:jupyterhub.https.type: required"),
    "an unknown type": (hub(https={"type": "manual"}), "mlplatform:jupyterhub.https.type: \"manual\" is not allowed; allowed: 'secret', 'letsencrypt', 'selfSigned' or 'offload'"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_https_settings_are_refused_naming_the_key(case):
    config, expected = REFUSALS[case]
    if config["jupyterhub"].get("https") is None:
        config["jupyterhub"].pop("https", None)
    lines = refused(config)
    assert any(line.startswith(expected) for line in lines), lines


CALLBACK_REFUSALS = {
    "plain http": (LETSENCRYPT, "http://notebooks.example.com/hub/oauth_callback"),
    "another host": (LETSENCRYPT, "https://hub.example.org/hub/oauth_callback"),
    "another path": (LETSENCRYPT, "https://notebooks.example.com/oauth_callback"),
    "offload, another host": ({"type": "offload", "hosts": ["notebooks.example.com"]}, "https://elsewhere.example.com/hub/oauth_callback"),
}


@pytest.mark.parametrize("case", CALLBACK_REFUSALS)
def test_the_oauth_callback_must_be_on_the_hubs_https_address(case):
    https, callback = CALLBACK_REFUSALS[case]
    lines = refused(*azuread(https, callback))
    (line,) = [line for line in lines if line.startswith("mlplatform:jupyterhub.auth.callbackUrl:")]
    assert f"{json.dumps(callback)} is not on the hub's https address; must be {CALLBACK}" in line, line


def test_an_oauth_hub_with_its_own_secret_names_its_host():
    # A Secret of the user's own says nothing about the names it is for: hosts must say it.
    lines = refused(*azuread({"type": "secret", "secretName": "hub-tls"}))
    assert any(line.startswith("mlplatform:jupyterhub.https.hosts: required with auth.type azuread") for line in lines), lines
    parse(*azuread({"type": "secret", "secretName": "hub-tls", "hosts": ["notebooks.example.com"]})[:1], frozenset({"jupyterhub"}))


def test_the_aks_example_without_https_is_refused():
    # Today's aks example (a LoadBalancer hub, no https) fails the preview instead of serving HTTP.
    lines = refused(*azuread(None))
    assert any(line.startswith("mlplatform:jupyterhub.https: required with jupyterhub.serviceType LoadBalancer") for line in lines)


@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_the_dev_stack_goes_public_with_one_key(service_type):
    parse(hub(serviceType=service_type))


@pytest.mark.parametrize(
    "https",
    [
        {"type": "secret", "secretName": "hub-tls", "hosts": ["notebooks.example.com"]},
        {"type": "selfSigned", "hosts": ["notebooks.example.com"]},
        {"type": "offload", "hosts": ["notebooks.example.com"]},
        {**LETSENCRYPT, "acmeServer": "https://acme-staging-v02.api.letsencrypt.org/directory", "installCertManager": True},
    ],
    ids=lambda https: https["type"],
)
def test_every_mode_takes_the_aks_examples_callback(https):
    config, secrets = azuread(https)
    parse(config, frozenset(secrets))


def test_a_self_signed_hub_takes_a_port_forward_callback():
    config, secrets = azuread({"type": "selfSigned"}, "https://localhost:8443/hub/oauth_callback", "ClusterIP")
    parse(config, frozenset(secrets))


def test_the_component_refuses_a_public_hub_without_https_before_registering_anything():
    # Settings built without the config layer meet the same rule.
    settings = JupyterHubSettings(service_type="LoadBalancer")
    deployment = Deployment()
    pulumi.runtime.set_mocks(RecordingMocks(deployment), project="mlplatform", stack="test", preview=False)

    @pulumi.runtime.test
    def program():
        JupyterHub("jupyterhub", JupyterHubArgs(settings, profile_scheduling={p.name: Scheduling() for p in settings.profiles}))

    with pytest.raises(ValueError, match=r"JupyterHubArgs\.settings\.https: required with jupyterhub\.serviceType LoadBalancer"):
        program()
    assert not deployment.resources


# --- selfSigned -------------------------------------------------------------------------------


def secret_values(built, name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in reveal(built.raw(name)["data"]).items()}


def test_self_signed_certificate_is_a_tls_secret_made_from_pulumi_secrets_and_kept():
    built = build(hub(https={"type": "selfSigned", "hosts": ["notebooks.example.com"]}))
    raw = built.raw("jupyterhub-tls")
    assert raw["type"] == "kubernetes.io/tls"
    assert raw["metadata"]["name"] == "proxy-public-tls"
    assert is_secret(raw["data"]), "the private key must reach the Secret as a Pulumi secret"
    assert "stringData" not in raw
    assert set(secret_values(built, "jupyterhub-tls")) == {"tls.crt", "tls.key", "ca.crt"}
    options = built.options["jupyterhub-tls"]
    assert options.ignore_changes == ["data"], "a new draw every run; Pulumi keeps the first"
    # New names draw a new certificate: the Secret is replaced when they change.
    assert options.replace_on_changes == ['metadata.annotations["mlplatform.dev/certificate-names"]']
    assert options.delete_before_replace


def test_self_signed_certificate_is_for_the_hubs_names_and_verifies_against_its_ca():
    built = build(hub(https={"type": "selfSigned", "hosts": ["notebooks.example.com"]}))
    values = secret_values(built, "jupyterhub-tls")
    server = x509.load_pem_x509_certificates(values["tls.crt"].encode())[0]
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "notebooks.example.com", "proxy-public.jupyterhub.svc", "proxy-public.jupyterhub", "proxy-public", "localhost"
    ]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    ca = x509.load_pem_x509_certificate(values["ca.crt"].encode())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    key = serialization.load_pem_private_key(values["tls.key"].encode(), password=None)
    assert key.public_key() == server.public_key(), "tls.key is the certificate's key"
    assert server.not_valid_after_utc - server.not_valid_before_utc <= datetime.timedelta(days=825)
    # What a client does: trust ca.crt, connect to a listed name; the chain and the key go together.
    context = ssl.create_default_context(cadata=values["ca.crt"])
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_self_signed_private_key_appears_in_no_other_object():
    built = build(hub(https={"type": "selfSigned"}))
    key = secret_values(built, "jupyterhub-tls")["tls.key"]
    encoded = base64.b64encode(key.encode()).decode()
    assert "PRIVATE KEY" in key
    for name in built.options:
        if name != "jupyterhub-tls":
            text = json.dumps(built.deployment.named(name).inputs, default=str)
            assert key not in text and encoded not in text, f"{name} holds the private key"


def test_the_dev_stack_is_self_signed_and_its_stack_state_holds_the_key_as_a_secret():
    deployment = run_program(example_stack("dev"))
    secret = deployment.named("jupyterhub-tls")
    assert secret.inputs["type"] == "kubernetes.io/tls" and is_secret(secret.inputs["data"])


def test_the_self_signed_generator_refuses_no_names_and_makes_fresh_keys():
    with pytest.raises(ValueError, match="at least one name"):
        tls.self_signed(())
    first, second = tls.self_signed(("a.example",)), tls.self_signed(("a.example",))
    assert first.private_key != second.private_key and first.ca != second.ca
    key = serialization.load_pem_private_key(first.private_key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_a_new_self_signed_certificate_restarts_the_proxy_only(monkeypatch):
    monkeypatch.setattr(secrets, "token_hex", lambda n: "0f" * n)  # the same proxy token both times

    def annotations(config):
        objects = build(config).objects()
        return tuple(objects[n]["spec"]["template"]["metadata"]["annotations"] for n in ("jupyterhub-hub", "jupyterhub-proxy"))

    hub_first, proxy_first = annotations(hub())
    hub_second, proxy_second = annotations(hub())  # another certificate, as `pulumi up --replace` draws
    assert proxy_first["checksum/secrets"] != proxy_second["checksum/secrets"]
    assert hub_first == hub_second


# --- the proxy and the public Service with TLS at the proxy --------------------------------------


def proxy_pod(objects: dict[str, dict]) -> dict[str, Any]:
    return objects["jupyterhub-proxy"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("https", "secret_name"),
    [({"type": "selfSigned"}, "proxy-public-tls"), ({"type": "secret", "secretName": "wildcard-tls"}, "wildcard-tls")],
    ids=["selfSigned", "secret"],
)
def test_the_proxy_serves_tls_from_the_secret_and_redirects_http(https, secret_name):
    objects = build(hub(serviceType="LoadBalancer", https=https)).objects()
    pod = proxy_pod(objects)
    (chp,) = pod["containers"]
    assert chp["command"][:5] == [
        "configurable-http-proxy", "--ip=", "--port=8443", "--ssl-key=/etc/chp/tls/tls.key", "--ssl-cert=/etc/chp/tls/tls.crt"
    ]
    assert "--redirect-port=8000" in chp["command"] and "--redirect-to=443" in chp["command"]
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": secret_name}}]
    assert chp["volumeMounts"] == [{"name": "tls", "mountPath": "/etc/chp/tls", "readOnly": True}]
    assert {p["name"]: p["containerPort"] for p in chp["ports"]} == {"https": 8443, "http": 8000, "api": 8001}
    assert chp["readinessProbe"]["httpGet"] == {"path": "/_chp_healthz", "port": "https", "scheme": "HTTPS"}
    assert chp["livenessProbe"]["exec"]["command"] == hub_config.served_certificate_check()
    public = objects["jupyterhub-proxy-public"]["spec"]
    assert public["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https"},
        {"name": "http", "port": 80, "targetPort": "http"},
    ]
    validate(objects["jupyterhub-proxy"])
    validate(objects["jupyterhub-proxy-public"])


def test_with_its_own_secret_the_stack_makes_no_certificate():
    objects = build(hub(https={"type": "secret", "secretName": "wildcard-tls"})).objects()
    assert not [o for o in objects.values() if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls"]
    assert not [o for o in objects.values() if o["apiVersion"] == cert_manager.API_VERSION]


def test_the_public_port_of_the_proxy_is_open_to_all_and_its_tls_port_too():
    objects = build(hub(https={"type": "selfSigned"})).objects()
    policy = objects["jupyterhub-netpol-proxy"]["spec"]
    assert {"ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 8443}]} in policy["ingress"]


# --- offload --------------------------------------------------------------------------------------


def test_offload_serves_plain_http_behind_443_and_tells_the_hub_its_https_url():
    built = build(hub(serviceType="LoadBalancer", https={"type": "offload", "hosts": ["notebooks.example.com"]}))
    objects = built.objects()
    (chp,) = proxy_pod(objects)["containers"]
    assert not any(a.startswith(("--ssl", "--redirect")) for a in chp["command"]) and "--port=8000" in chp["command"]
    assert "volumes" not in proxy_pod(objects)
    assert objects["jupyterhub-proxy-public"]["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "http"},
        {"name": "http", "port": 80, "targetPort": "http"},
    ]
    # Behind a TLS-terminating front the hub would see http requests; public_url says otherwise.
    assert built.document()["traits"]["JupyterHub"]["public_url"] == "https://notebooks.example.com/"
    assert not [o for o in objects.values() if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls"]


def test_without_a_host_the_hub_takes_its_url_from_requests():
    assert "public_url" not in build(hub(https={"type": "selfSigned"})).document()["traits"]["JupyterHub"]


# --- letsencrypt ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aks_objects() -> dict[str, dict]:
    config, secrets = aks_stack()
    return {r.name: r.manifest() for r in run_program(config, secrets).kubernetes_objects()}


def test_the_aks_example_installs_the_pinned_cert_manager_release():
    config, secrets = aks_stack()
    deployment = run_program(config, secrets)
    (release,) = deployment.of_type("kubernetes:yaml/v2:ConfigFile")
    assert release.inputs["file"] == CERT_MANAGER_MANIFEST
    assert CERT_MANAGER_MANIFEST == (
        f"https://github.com/cert-manager/cert-manager/releases/download/{PINS['CERT_MANAGER_VERSION']}/cert-manager.yaml"
    )
    (component,) = deployment.of_type("mlplatform:cert_manager:CertManager")
    assert component.name == "cert-manager"


def test_without_install_cert_manager_the_stack_uses_the_clusters_own():
    config, secrets = aks_stack()
    config["jupyterhub"]["https"] = {k: v for k, v in config["jupyterhub"]["https"].items() if k != "installCertManager"}
    deployment = run_program(config, secrets)
    assert not deployment.of_type("kubernetes:yaml/v2:ConfigFile")
    assert deployment.named("jupyterhub-certificate")


def test_letsencrypt_issuer_is_an_acme_account_solving_http01_through_the_proxy(aks_objects):
    issuer = aks_objects["jupyterhub-issuer"]
    validate(issuer)
    assert (issuer["kind"], issuer["metadata"]["namespace"]) == ("Issuer", "jupyterhub")
    acme = issuer["spec"]["acme"]
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["email"] == "admin@example.com"
    (solver,) = acme["solvers"]
    ingress = solver["http01"]["ingress"]
    assert ingress["serviceType"] == "ClusterIP"
    # Solver pods are placed like the hub's own (the aks example's CPU pool).
    assert ingress["podTemplate"]["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "cpu"}


def test_letsencrypt_certificate_is_for_the_host_and_exists_at_once(aks_objects):
    certificate = aks_objects["jupyterhub-certificate"]
    validate(certificate)
    assert certificate["spec"]["secretName"] == "proxy-public-tls"
    assert certificate["spec"]["dnsNames"] == ["notebooks.example.com"]
    assert certificate["spec"]["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "letsencrypt"}
    # The proxy cannot start without a certificate: cert-manager writes a temporary one first.
    assert certificate["metadata"]["annotations"]["cert-manager.io/issue-temporary-certificate"] == "true"
    assert proxy_pod(aks_objects)["volumes"] == [{"name": "tls", "secret": {"secretName": "proxy-public-tls"}}]


def test_the_proxy_routes_acme_challenges_to_the_solver_pods(aks_objects):
    containers = {c["name"]: c for c in proxy_pod(aks_objects)["containers"]}
    route = containers["acme-route"]
    assert route["command"] == hub_config.acme_route_command()
    assert "/api/routes/.well-known/acme-challenge" in route["command"][2]
    assert "http://acme-solver:8089" in route["command"][2]
    assert route["env"] == containers["chp"]["env"], "the proxy API's token"
    assert route["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    solver = aks_objects["jupyterhub-acme-solver"]
    assert solver["metadata"]["name"] == "acme-solver"
    assert solver["spec"]["selector"] == {"acme.cert-manager.io/http01-solver": "true"}
    assert solver["spec"]["ports"] == [{"name": "http", "port": 8089, "targetPort": 8089}]
    egress = aks_objects["jupyterhub-netpol-proxy"]["spec"]["egress"]
    assert {
        "to": [{"podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}}],
        "ports": [{"protocol": "TCP", "port": 8089}],
    } in egress


def test_the_issuer_and_certificate_wait_for_cert_manager():
    config, secrets = aks_stack()
    settings = parse(config, frozenset(secrets))
    built: dict[str, pulumi.ResourceOptions] = {}
    deployment = Deployment()
    pulumi.runtime.set_mocks(RecordingMocks(deployment), project="mlplatform", stack="test", preview=False)

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        built[args.name] = args.opts

    @pulumi.runtime.test
    def program():
        from components.cert_manager import CertManager
        from components.cluster import Cluster, ClusterArgs

        cluster = Cluster("mlplatform", ClusterArgs(settings.cluster))
        on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])
        ready = tuple(CertManager("cert-manager", opts=on_cluster).ready)
        JupyterHub(
            "jupyterhub",
            JupyterHubArgs.from_cluster(settings.jupyterhub, cluster, cert_manager=ready),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(transformations=[record])),
        )
        for name in ("jupyterhub-issuer", "jupyterhub-certificate"):
            assert list(built[name].depends_on) == list(ready), name

    program()


def test_the_hub_knows_its_public_https_url(aks_objects):
    document = json.loads(aks_objects["jupyterhub-config"]["data"][hub_config.DOCUMENT_NAME])
    assert document["traits"]["JupyterHub"]["public_url"] == "https://notebooks.example.com/"
    assert document["traits"]["AzureAdOAuthenticator"]["oauth_callback_url"] == CALLBACK


def test_the_cert_manager_validator_refuses_what_its_crd_refuses(aks_objects):
    # Proves the CRD checks above can fail: an unknown field, and a solver missing its type.
    bad = copy.deepcopy(aks_objects["jupyterhub-certificate"])
    bad["spec"]["dnsName"] = "notebooks.example.com"
    with pytest.raises(Invalid, match="dnsName"):
        validate(bad)
    bad = copy.deepcopy(aks_objects["jupyterhub-issuer"])
    bad["spec"]["acme"]["privateKeySecretRef"] = {}
    with pytest.raises(Invalid, match="name"):
        validate(bad)


# --- the webhook controllers' first certificates (components/k8s.py cert_rotator_secret) ---------

# cert-controller's checks (v0.16.0, pkg/rotator): a certificate is kept while it is valid 90 days on.
ROTATOR_LOOKAHEAD = datetime.timedelta(days=90)
WEBHOOK_SECRETS = {
    # resource name: (Secret, namespace, the rotator's CA name, the Service the API server dials)
    "kueue-webhook-cert": ("kueue-webhook-server-cert", "kueue-system", "kueue-ca", "kueue-webhook-service.kueue-system.svc"),
    "training-operator-webhook-cert": (
        "training-operator-webhook-cert", "kubeflow", "training-operator-ca", "training-operator.kubeflow.svc",
    ),
}


def webhook_secret_values(deployment: Deployment, name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in reveal(deployment.named(name).inputs["data"]).items()}


@pytest.mark.parametrize("stack, names", [
    ("dev", sorted(WEBHOOK_SECRETS)),
    ("aks", ["training-operator-webhook-cert"]),  # its example runs no Kueue
])
def test_webhook_controllers_start_with_a_certificate_their_rotator_keeps_made_from_pulumi_secrets(stack, names):
    config, secret_keys = (example_stack("dev"), ()) if stack == "dev" else aks_stack()
    deployment = run_program(config, secret_keys)
    for name in names:
        secret_name, namespace, _, _ = WEBHOOK_SECRETS[name]
        secret = deployment.named(name)
        assert secret.inputs["metadata"]["name"] == secret_name and secret.inputs["metadata"]["namespace"] == namespace
        assert is_secret(secret.inputs["data"]), f"{name}: the CA's key must reach the Secret as a Pulumi secret"
        assert set(webhook_secret_values(deployment, name)) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
        # The rotator renews it in the cluster; Pulumi keeps its first draw and never undoes a renewal.
        assert deployment.options[name].ignore_changes == ["data"]


@pytest.mark.parametrize("name", sorted(WEBHOOK_SECRETS))
def test_webhook_certificate_passes_the_rotators_checks_now_and_90_days_on(name):
    """What cert-controller checks before it keeps a Secret's certificate (rotator.go ValidCert):
    the CA verifies itself for the CA's name, the server certificate chains to it for the
    Service's name with server auth, each with its key, at the time 90 days from now."""
    _, _, ca_name, service = WEBHOOK_SECRETS[name]
    values = webhook_secret_values(run_program(example_stack("dev")), name)
    ca = x509.load_pem_x509_certificate(values["ca.crt"].encode())
    server = x509.load_pem_x509_certificate(values["tls.crt"].encode())
    ca_key = serialization.load_pem_private_key(values["ca.key"].encode(), password=None)
    key = serialization.load_pem_private_key(values["tls.key"].encode(), password=None)
    assert ca_key.public_key() == ca.public_key() and key.public_key() == server.public_key()
    checked_at = datetime.datetime.now(datetime.timezone.utc) + ROTATOR_LOOKAHEAD
    assert ca.not_valid_before_utc < datetime.datetime.now(datetime.timezone.utc) and checked_at < server.not_valid_after_utc
    ca_names = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ca_names.get_values_for_type(x509.DNSName) == [ca_name]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    server_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert server_names.get_values_for_type(x509.DNSName) == [service]
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    server.verify_directly_issued_by(ca)
    # A TLS client that trusts only ca.crt accepts the pair for the Service's name.
    verifier = (
        x509.verification.PolicyBuilder()
        .store(x509.verification.Store([ca]))
        .time(checked_at)
        .build_server_verifier(x509.DNSName(service))
    )
    assert verifier.verify(server, [])[-1] == ca


def test_webhook_ca_key_is_the_form_the_rotator_reads_back_to_sign_the_next_server_certificate():
    values = tls.cert_rotator_secret_data("kueue-ca", "kueue", "kueue-webhook-service.kueue-system.svc")
    # cert-controller reads ca.key with x509.ParsePKCS1PrivateKey: RSA, "RSA PRIVATE KEY".
    assert values["ca.key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert isinstance(serialization.load_pem_private_key(values["ca.key"].encode(), password=None), rsa.RSAPrivateKey)
    organization = x509.load_pem_x509_certificate(values["ca.crt"].encode()).subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [attribute.value for attribute in organization] == ["kueue"]
    again = tls.cert_rotator_secret_data("kueue-ca", "kueue", "kueue-webhook-service.kueue-system.svc")
    assert again["ca.key"] != values["ca.key"] and again["tls.key"] != values["tls.key"]
