"""The central archive opened as one object: its key, catalogue and blob store."""

import importlib
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from quire import keys

from .store.blobs import BlobStore, DiskBlobStore
from .store.catalogue import CatalogueStore
from .store.catalogues import open_catalogue
from .config import CentralConfig
from .errors import ConfigError
from .tls import TlsIdentity, load_or_create


@dataclass
class Archive:
    config: CentralConfig
    key: keys.Signer | nacl.signing.SigningKey
    catalogue: CatalogueStore
    blobs: BlobStore
    tls: TlsIdentity

    @property
    def public_key(self) -> bytes:
        return keys.signer(self.key).public_key

    def close(self) -> None:
        self.catalogue.close()
        self.blobs.close()


def s3_store(url: str, credentials: Path | None) -> BlobStore:
    """The S3-compatible bucket at ``url``. Its module is loaded by name, only for an archive kept in a
    bucket: boto3 and obstore cost every other command a third of a second at start."""
    return importlib.import_module(".store.blobs_s3", __package__).S3BlobStore(url, credentials)


def open_blobs(config: CentralConfig) -> BlobStore:
    """The blob store the config names: the home's blobs folder, or an S3-compatible bucket."""
    if config.blobs.startswith("s3://"):
        credentials = config.blobs_credentials
        return s3_store(config.blobs, config.home / credentials if credentials else None)
    return DiskBlobStore(config.blobs_dir, config.uploads_dir, config.upload_lock_wait_s)


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
    catalogue = open_catalogue(config.catalogue or config.db_path, pool_size=config.workers + config.open_calls + 4)
    try:
        blobs = open_blobs(config)
    except BaseException:
        catalogue.close()
        raise
    return Archive(config, key, catalogue, blobs, load_or_create(config.home / "tls"))
