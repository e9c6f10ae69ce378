"""The central archive opened as one object: its key, catalogue and blob store."""

from dataclasses import dataclass

import nacl.signing

from quire import keys

from .blobs import BlobStore
from .catalogue import Catalogue
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
    return Archive(config, key, Catalogue(config.db_path), BlobStore(config.blobs_dir, config.uploads_dir),
                   load_or_create(config.home / "tls"))
