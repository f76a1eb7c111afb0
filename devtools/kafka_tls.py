"""A throwaway CA and a loopback server certificate for the SASL_SSL listener."""

import subprocess
from pathlib import Path

SUBJECT_ALT_NAME = "subjectAltName=DNS:localhost,IP:127.0.0.1"


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
    rsa = ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    _openssl("genpkey", *rsa, "-out", "ca-key.pem", cwd=directory)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca-key.pem",
        "-days",
        "3650",
        "-subj",
        "/CN=healthcare test CA",
        "-out",
        "ca.pem",
        cwd=directory,
    )
    _openssl("genpkey", *rsa, "-out", "server-key.pem", cwd=directory)
    _openssl(
        "req",
        "-new",
        "-key",
        "server-key.pem",
        "-subj",
        "/CN=localhost",
        "-out",
        "server.csr",
        cwd=directory,
    )
    (directory / "san.ext").write_text(SUBJECT_ALT_NAME + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        "san.ext",
        "-out",
        "server-cert.pem",
        cwd=directory,
    )
    keystore.write_text(
        (directory / "server-key.pem").read_text()
        + (directory / "server-cert.pem").read_text()
    )
    return ca, keystore
