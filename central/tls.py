"""The central service's TLS identity: a self-signed certificate that stations pin at enrolment."""

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Stations reach the service by address but check the certificate against this fixed name:
# the pin, not DNS, is what makes the certificate trustworthy.
TLS_NAME = "quire-central"


@dataclass(frozen=True)
class TlsIdentity:
    key_pem: bytes
    cert_pem: bytes

    @property
    def cert_sha256(self) -> bytes:
        return hashlib.sha256(_der(self.cert_pem)).digest()


def load_or_create(directory: Path) -> TlsIdentity:
    """The TLS key (0600) and certificate in ``directory``, created on first use."""
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    if not key_path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
            fh.flush()
            os.fsync(fh.fileno())
        cert_path.unlink(missing_ok=True)
    if not cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        tmp = cert_path.with_suffix(".tmp")
        tmp.write_bytes(_self_signed(key).public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, cert_path)
    return TlsIdentity(key_path.read_bytes(), cert_path.read_bytes())


def _self_signed(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
