"""The central archive opened as one object: its key, catalogue and blob store."""

from dataclasses import dataclass

import nacl.signing

from quire import keys

from .store.blobs import BlobStore, DiskBlobStore
from .store.blobs_s3 import S3BlobStore
from .store.catalogue import Catalogue
from .config import CentralConfig
from .errors import ConfigError
from .tls import TlsIdentity, load_or_create


@dataclass
class Archive:
    config: CentralConfig
    key: keys.Signer | nacl.signing.SigningKey
    catalogue: Catalogue
    blobs: BlobStore
    tls: TlsIdentity

    @property
    def public_key(self) -> bytes:
        return keys.signer(self.key).public_key

    def close(self) -> None:
        self.catalogue.close()
        self.blobs.close()


def open_blobs(config: CentralConfig) -> BlobStore:
    """The blob store the config names: the home's blobs folder, or an S3-compatible bucket."""
    if config.blobs.startswith("s3://"):
        credentials = config.blobs_credentials
        return S3BlobStore(config.blobs, config.home / credentials if credentials else None)
    return DiskBlobStore(config.blobs_dir, config.uploads_dir)


def open_archive(config: CentralConfig, create: bool = True) -> Archive:
    """Open the archive at the configured home, creating key and catalogue on first use."""
    if not config.key_path.exists():
        if not create:
            raise ConfigError(f"no central archive at {config.home}; run 'quire-central init'")
        config.home.mkdir(parents=True, exist_ok=True)
        keys.create_key_file(config.key_path)
    try:
        key = keys.load_key_file(config.key_path)
    except keys.ContractError as exc:
        raise ConfigError(str(exc)) from None
    return Archive(config, key, Catalogue(config.db_path), open_blobs(config),
                   load_or_create(config.home / "tls"))
