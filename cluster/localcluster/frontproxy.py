"""The API server's front proxy: what it needs to serve aggregated APIs (Kueue's visibility API).

kube-apiserver forwards a request for an aggregated API (an APIService backed by a Service) to the
extension server with a client certificate of its own and the caller's identity in X-Remote-*
headers. The extension server believes those headers only from a certificate signed by the CA the
API server publishes as `requestheader-client-ca-file` in kube-system's
extension-apiserver-authentication ConfigMap, and only for the names it lists there. kwokctl's
binary runtime sets neither: it lends the proxy its admin certificate (system:masters, signed by
the cluster CA), so an extension server would see every proxied caller as the cluster's admin.

So a new cluster gets its own front-proxy CA and a client certificate it signs (CN
front-proxy-client, client auth only), as kubeadm makes them, in the cluster's directory, and the
API server the flags that use them (`api_server_args`). Made with openssl at creation, readable by
their owner only; a restarted cluster keeps them (kwokctl keeps the flags it was created with).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

DIRECTORY = "front-proxy"
CA = "front-proxy-ca"
CLIENT = "front-proxy-client"
# The user the proxy's certificate names: the only one whose X-Remote-* headers extension servers
# believe (requestheader-allowed-names).
CLIENT_NAME = "front-proxy-client"
DAYS = 3650


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)


def make(cluster_dir: Path) -> Path:
    """The front-proxy CA and client certificate of a cluster (made once; kept when they exist)."""
    directory = cluster_dir / DIRECTORY
    ca_key, ca_crt = directory / f"{CA}.key", directory / f"{CA}.crt"
    key, crt = directory / f"{CLIENT}.key", directory / f"{CLIENT}.crt"
    if all(p.is_file() for p in (ca_key, ca_crt, key, crt)):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    old = os.umask(0o077)
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
                 "-days", str(DAYS), "-subj", f"/CN={CA}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            csr = Path(scratch) / "client.csr"
            extensions = Path(scratch) / "client.ext"
            extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                  "extendedKeyUsage=clientAuth\n")
            _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                     "-subj", f"/CN={CLIENT_NAME}")
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                     "-CAcreateserial", "-CAserial", str(Path(scratch) / "ca.srl"), "-days", str(DAYS),
                     "-extfile", str(extensions), "-out", str(crt))
    finally:
        os.umask(old)
    return directory


def api_server_args(directory: Path) -> tuple[str, ...]:
    """kwokctl's `--extra-args` for kube-apiserver: the proxy's certificate (after kwokctl's own
    --proxy-client-* flags, so these win) and the request-header settings extension servers read."""
    flags = {
        "proxy-client-cert-file": directory / f"{CLIENT}.crt",
        "proxy-client-key-file": directory / f"{CLIENT}.key",
        "requestheader-client-ca-file": directory / f"{CA}.crt",
        "requestheader-allowed-names": CLIENT_NAME,
        "requestheader-username-headers": "X-Remote-User",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
    }
    args: list[str] = []
    for flag, value in flags.items():
        args += ["--extra-args", f"kube-apiserver={flag}={value}"]
    return tuple(args)
