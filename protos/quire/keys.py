"""Ed25519 key files and domain-separated signatures, shared by stations and the central service.

Everything signs through one interface, ``Signer``: today an Ed25519 key file, tomorrow an SM2 key in
an HSM or a 签名验签服务器 (GB/T 39786), added as another implementation without touching callers.
"""

import hashlib
import os
import stat
from pathlib import Path
from typing import Protocol

import nacl.exceptions
import nacl.signing

from .cas import fsync_dir
from .errors import BadSignature, ContractError, UnknownFormat

KEY_FILE_FORMAT = "quire-ed25519-key/1"

# Domain separation: a signature made for one purpose can never be replayed as another.
BUNDLE_CONTEXT = b"quire.bundle.v1\x00"
RECEIPT_CONTEXT = b"quire.receipt.v1\x00"
CALL_CONTEXT = b"quire.call.v1\x00"              # a station's signature on one gRPC call
ENROL_CONTEXT = b"quire.enrol.v1\x00"            # a station asking to be enrolled
TLS_BINDING_CONTEXT = b"quire.tls-binding.v1\x00"  # the central key vouching for its TLS cert
CHECKPOINT_CONTEXT = b"quire.checkpoint.v1\x00"    # the central key vouching for an audit log head
EXPORT_CONTEXT = b"quire.export.v1\x00"            # the central key vouching for an exported dossier


class KeyFileError(ContractError):
    """A key file that is missing, unreadable, too open or not a Quire key."""


def fingerprint(public_key: bytes) -> str:
    """Printable fingerprint of a public key: ``SHA256:`` and the hex digest."""
    return "SHA256:" + hashlib.sha256(public_key).hexdigest()


def key_id(public_key: bytes) -> str:
    """Short id of a public key for messages: the first 16 hex digits of its fingerprint."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def create_key_file(path: Path) -> nacl.signing.SigningKey:
    """Create a new Ed25519 key at ``path`` with mode 0600; refuse to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = nacl.signing.SigningKey.generate()
    body = f"{KEY_FILE_FORMAT}\n{key.encode().hex()}\n".encode()
    # O_EXCL: two processes starting at once must not both write a key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return key


def load_key_file(path: Path) -> nacl.signing.SigningKey:
    """Load an Ed25519 key; refuse a file others can read or a format we do not know."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"no key at {path}; run the tool's 'init' command first") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run 'chmod 600 {path}'"
        )
    lines = path.read_text().split()
    if not lines or lines[0] != KEY_FILE_FORMAT:
        raise UnknownFormat("key file", lines[0] if lines else "", (KEY_FILE_FORMAT,))
    try:
        return nacl.signing.SigningKey(bytes.fromhex(lines[1]))
    except (IndexError, ValueError, nacl.exceptions.CryptoError):
        raise KeyFileError(f"key file {path} is damaged; restore it from backup") from None


class Signer(Protocol):
    """Something that signs bytes with a private key it may never hand out."""

    algorithm: str

    @property
    def public_key(self) -> bytes: ...

    def signature(self, message: bytes) -> bytes:
        """The detached signature over ``message``."""


class Ed25519Signer:
    """A Signer over an Ed25519 key held in memory (PyNaCl)."""

    algorithm = "ed25519"

    def __init__(self, key: nacl.signing.SigningKey):
        self._key = key

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def signature(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def signer(key: "Signer | nacl.signing.SigningKey") -> Signer:
    """``key`` as a Signer: an Ed25519 key as given by ``load_key_file``, or any Signer itself."""
    return Ed25519Signer(key) if isinstance(key, nacl.signing.SigningKey) else key


def sign(key: "Signer | nacl.signing.SigningKey", context: bytes, payload: bytes) -> bytes:
    """Detached signature over ``context || payload``."""
    return signer(key).signature(context + payload)


def verify(public_key: bytes, context: bytes, payload: bytes, signature: bytes, what: str) -> None:
    """Check a detached signature; raise BadSignature naming ``what`` and the key."""
    try:
        nacl.signing.VerifyKey(public_key).verify(context + payload, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        raise BadSignature(what, key_id(public_key)) from None
