"""A self-signed certificate for the hub's proxy (`jupyterhub.https.type selfSigned`), by `cryptography`.

What a private CA would do, once: a throw-away certificate authority signs one server
certificate for the hub's names. The Secret keeps the server certificate, its key and the CA's
certificate (`ca.crt`, for browsers and clients to trust); the CA's own key is never stored, so
nothing can sign another certificate in its name. The JupyterHub component draws this once and
keeps it in Pulumi's state as a secret, like the proxy token.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
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


def self_signed(names: tuple[str, ...], now: datetime.datetime | None = None) -> SelfSigned:
    """A server certificate for `names` (DNS names or IP addresses; the first is its common name),
    signed by a CA made for it alone. ECDSA P-256 keys: fast to draw, and every browser takes them."""
    if not names:
        raise ValueError("self_signed: at least one name is needed")
    now = (now or datetime.datetime.now(datetime.timezone.utc)) - CLOCK_SKEW
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"mlplatform hub CA for {names[0]}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alternative_names(names)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem).decode()
    return SelfSigned(
        # The chain a client needs: the server's certificate, then its issuer's.
        certificate=server.public_bytes(pem).decode() + ca_pem,
        private_key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
        ca=ca_pem,
    )
