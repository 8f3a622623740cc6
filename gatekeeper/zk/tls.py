"""A small private CA for ZooKeeper TLS: server key/trust stores for Java, PEM files for kazoo clients.

Production installations bring their own certificates; this makes a working set for tests, the demo and
`zookeeper/run-zookeeper --tls`, with `openssl` and Java's `keytool`.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from gatekeeper.zk.server import TLSFiles


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def make_pki(directory: str | Path, host: str = "127.0.0.1", days: int = 30) -> TLSFiles:
    """Create a CA, a server certificate for `host` and a client certificate, signed by the CA."""
    if not shutil.which("openssl") or not shutil.which("keytool"):
        raise RuntimeError("making ZooKeeper TLS files needs openssl and keytool (Java) on the PATH")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    ca_key, ca_cert = d / "ca.key", d / "ca.pem"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert),
         "-days", str(days), "-subj", "/CN=gatekeeper-test-ca")
    for name in ("server", "client"):
        key, csr, cert, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN=gatekeeper-{name}")
        ext.write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
        _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", str(days), "-extfile", str(ext))
    keystore, truststore = d / "server-keystore.p12", d / "server-truststore.p12"
    _run("openssl", "pkcs12", "-export", "-in", str(d / "server.pem"), "-inkey", str(d / "server.key"),
         "-certfile", str(ca_cert), "-name", "server", "-out", str(keystore), "-passout", f"pass:{password}")
    _run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_cert), "-keystore", str(truststore),
         "-storetype", "PKCS12", "-storepass", password)
    return TLSFiles(
        server_keystore=str(keystore),
        server_truststore=str(truststore),
        password=password,
        ca_cert=str(ca_cert),
        client_cert=str(d / "client.pem"),
        client_key=str(d / "client.key"),
    )
