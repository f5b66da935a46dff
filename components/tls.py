"""A self-signed certificate for the hub's proxy (`jupyterhub.https.type selfSigned`), by `cryptography`.

What a private CA would do, once: a throw-away certificate authority signs one server
certificate for the hub's names. The Secret keeps the server certificate, its key and the CA's
certificate (`ca.crt`, for browsers and clients to trust); the CA's own key is never stored, so
nothing can sign another certificate in its name. The JupyterHub component draws this once and
keeps it in Pulumi's state as a secret, like the proxy token.

And the first webhook certificate of a controller whose cert rotator (open-policy-agent's
cert-controller, in Kueue and the training operator) keeps its own in a Secret: drawn here in the
shape the rotator checks and keeps, so that the controller's pod finds it mounted when it starts,
instead of writing one and waiting for the kubelet to mount it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Apple's platforms refuse TLS server certificates valid for longer than 825 days, whoever the
# issuer; `pulumi up --replace` on the Secret draws a new one before then.
SERVER_DAYS = 825
CA_DAYS = SERVER_DAYS + 1
# Backdated a little, so that a node whose clock runs behind accepts it at once.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# The keys of a `kubernetes.io/tls` Secret, and the CA beside them, as cert-manager writes it.
CERT_KEY = "tls.crt"
PRIVATE_KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
# The cert rotator's Secret also holds its CA's key, with which it signs the next server
# certificate when this one nears its end (cert-controller's `ca.key`).
CA_PRIVATE_KEY_KEY = "ca.key"
# As long as the cert rotator makes them (cert-controller v0.16.0's defaults): it draws a new
# server certificate 90 days before the end of one, and a new CA 90 days before the CA's.
ROTATOR_CA_DAYS = 10 * 365
ROTATOR_SERVER_DAYS = 365


@dataclass(frozen=True)
class SelfSigned:
    """PEM texts: the server certificate, its private key, and the CA that signed it."""

    certificate: str
    private_key: str
    ca: str

    def secret_data(self) -> dict[str, str]:
        """The Secret's keys (plain text; the component encodes them)."""
        return {CERT_KEY: self.certificate, PRIVATE_KEY_KEY: self.private_key, CA_KEY: self.ca}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlplatform"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alternative_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    found: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            found.append(x509.DNSName(name))
    return found


def _key_usage(*, digital_signature: bool, sign_certificates: bool, encipher_keys: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=encipher_keys,
        data_encipherment=False, key_agreement=False, key_cert_sign=sign_certificates, crl_sign=sign_certificates,
        encipher_only=False, decipher_only=False,
    )

# A CA of the hub's signs certificates only; the rotator's is made as cert-controller makes its own
# (digital signature, key encipherment, certificate signing).
HUB_CA_USAGE = _key_usage(digital_signature=False, sign_certificates=True)
ROTATOR_CA_USAGE = _key_usage(digital_signature=True, sign_certificates=True, encipher_keys=True)
SERVER_USAGE = _key_usage(digital_signature=True, sign_certificates=False)


def _authority(name: x509.Name, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, start: datetime.datetime,
               days: int, usage: x509.KeyUsage, alternative_names: tuple[str, ...] = ()) -> x509.Certificate:
    """A self-signed CA certificate that may sign server certificates and nothing below them."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if alternative_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alternative_names(alternative_names)), critical=False)
    return builder.sign(key, hashes.SHA256())


def _server(common_name: str, names: tuple[str, ...], key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
            ca_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, start: datetime.datetime, days: int) -> x509.Certificate:
    """A TLS server certificate for `names`, signed by `ca`."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(SERVER_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alternative_names(names)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
             private_format: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption()).decode()


def self_signed(names: tuple[str, ...], now: datetime.datetime | None = None) -> SelfSigned:
    """A server certificate for `names` (DNS names or IP addresses; the first is its common name),
    signed by a CA made for it alone. ECDSA P-256 keys: fast to draw, and every browser takes them."""
    if not names:
        raise ValueError("self_signed: at least one name is needed")
    start = (now or datetime.datetime.now(datetime.timezone.utc)) - CLOCK_SKEW
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _authority(_name(f"mlplatform hub CA for {names[0]}"), ca_key, start, CA_DAYS, HUB_CA_USAGE)
    key = ec.generate_private_key(ec.SECP256R1())
    server = _server(names[0], names, key, ca, ca_key, start, SERVER_DAYS)
    ca_pem = _pem(ca)
    # The chain a client needs: the server's certificate, then its issuer's.
    return SelfSigned(certificate=_pem(server) + ca_pem, private_key=_key_pem(key), ca=ca_pem)


def cert_rotator_secret_data(ca_name: str, ca_organization: str, service_name: str,
                             now: datetime.datetime | None = None) -> dict[str, str]:
    """The four keys of a cert rotator's Secret (plain text), as the rotator keeps them: a CA
    named `ca_name` (its check verifies the CA for that DNS name) and a server certificate for
    `service_name`, the webhook Service's `<name>.<namespace>.svc` the API server dials.

    The CA's key is RSA in PKCS#1, the only form in which the rotator reads it back to sign the next
    server certificate; the server's key is ECDSA P-256, which the rotator's check and the
    webhook server's TLS take, and which costs a fraction of a millisecond to draw."""
    start = (now or datetime.datetime.now(datetime.timezone.utc)) - CLOCK_SKEW
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca_organization), x509.NameAttribute(NameOID.COMMON_NAME, ca_name),
    ])
    ca = _authority(ca_subject, ca_key, start, ROTATOR_CA_DAYS, ROTATOR_CA_USAGE, alternative_names=(ca_name,))
    key = ec.generate_private_key(ec.SECP256R1())
    server = _server(service_name, (service_name,), key, ca, ca_key, start, ROTATOR_SERVER_DAYS)
    return {
        CA_KEY: _pem(ca),
        CA_PRIVATE_KEY_KEY: _key_pem(ca_key, serialization.PrivateFormat.TraditionalOpenSSL),
        CERT_KEY: _pem(server),
        PRIVATE_KEY_KEY: _key_pem(key),
    }
