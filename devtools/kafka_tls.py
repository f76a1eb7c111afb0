"""A throwaway CA and a loopback server certificate for the SASL_SSL listener."""

import subprocess
from pathlib import Path

SUBJECT_ALT_NAME = "subjectAltName=DNS:localhost,IP:127.0.0.1"


RSA = "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"
# A CA, then a server key (PKCS#8, unencrypted) and its certificate signed by the CA.
STEPS = [
    f"genpkey {RSA} -out ca-key.pem",
    "req -x509 -new -key ca-key.pem -days 3650 -subj /CN=healthcare-test-CA -out ca.pem",
    f"genpkey {RSA} -out server-key.pem",
    "req -new -key server-key.pem -subj /CN=localhost -out server.csr",
    "x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial"
    " -days 3650 -extfile san.ext -out server-cert.pem",
]


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``server-keystore.pem`` (PKCS#8 key + cert) once.

    The keystore is the PEM keystore Kafka reads with ``ssl.keystore.type=PEM``
    and no password; clients trust ``ca.pem`` and check the host name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, keystore = directory / "ca.pem", directory / "server-keystore.pem"
    if ca.exists() and keystore.exists():
        return ca, keystore
    (directory / "san.ext").write_text(SUBJECT_ALT_NAME + "\n")
    for step in STEPS:
        _openssl(*step.split(), cwd=directory)
    keystore.write_text(
        (directory / "server-key.pem").read_text()
        + (directory / "server-cert.pem").read_text()
    )
    return ca, keystore
