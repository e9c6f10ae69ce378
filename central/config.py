"""Central configuration: loaded once from TOML, validated, passed down."""

import importlib
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from quire import settings
from quire.settings import HostPort, Settings

from .errors import ConfigError


def _blobs_url(value: str) -> str:
    if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?", value):
        raise ValueError("must be \"\" (the home's blobs folder) or s3://BUCKET/PREFIX, e.g. s3://quire-archive/pages")
    return value


BlobsUrl = Annotated[str, AfterValidator(_blobs_url)]


def catalogue_url_params(value: str) -> dict:
    """The connection parameters of a postgresql:// catalogue URL; ValueError saying what is wrong. A URL
    carrying a password is refused: no secret in a config file."""
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be \"\" (the home's central.db) or postgresql://USER@HOST/DATABASE, "
                         "e.g. postgresql://quire@db.example/quire")
    # psycopg parses it the way libpq will; loaded by name, as only a PostgreSQL catalogue needs it
    psycopg = importlib.import_module("psycopg")
    try:
        params = psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a PostgreSQL URL ({exc}); e.g. postgresql://quire@db.example/quire") from None
    if params.get("password"):
        raise ValueError("carries a password: remove it and put it in libpq's password file instead "
                         "(~/.pgpass of the archive's user, or the file PGPASSFILE names, mode 0600)")
    return params


def _catalogue_url(value: str) -> str:
    if value:
        catalogue_url_params(value)
    return value


CatalogueUrl = Annotated[str, AfterValidator(_catalogue_url)]

DEFAULT_HOME = Path("/var/lib/quire/central")
SYSTEM_CONFIG = Path("/etc/quire/central.toml")


class CentralSettings(Settings):
    """What central.toml may say: every key, its type and its range."""

    listen: HostPort = "127.0.0.1:7443"
    workers: int = Field(16, ge=1, le=256)         # threads serving stations' and readers' gRPC calls
    open_calls: int = Field(4, ge=1, le=64)        # threads of their own for streams without a key (health Watch, reflection)
    stream_idle_s: float = Field(30.0, ge=1, le=3600)  # a stream whose caller sends nothing this long is ended
    max_chunk_bytes: int = Field(4 << 20, ge=4096, le=64 << 20)  # largest upload chunk accepted
    insecure: bool = False                   # plain-text gRPC, for a lab only
    advertise: bool = True                   # zeroconf _quire._tcp with the key fingerprint
    # "all", or addresses, e.g. ["127.0.0.1"] for tests and the demo
    zeroconf_interfaces: Literal["all"] | list[str] = "all"
    # Where page files live: "" the home's blobs/ folder; "s3://BUCKET/PREFIX" an S3-compatible bucket, its
    # endpoint and keys from blobs_credentials (a TOML file of mode 0600, relative to the home or absolute) or
    # else the AWS_* environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    blobs: BlobsUrl = ""
    # Where the catalogue, audit log, users and consultations live: "" the home's central.db (SQLite);
    # "postgresql://USER@HOST/DATABASE" a PostgreSQL database that several serve processes may share. No
    # password in the URL: libpq reads it from ~/.pgpass or the file PGPASSFILE names (mode 0600).
    catalogue: CatalogueUrl = ""
    blobs_credentials: str | None = None
    # How long an upload to the home's blobs folder waits for another call still writing the same page (after
    # a cut, the broken call still writes the chunks it had queued) before it is refused and the station
    # retries; serve processes sharing one home wait for each other the same way.
    upload_lock_wait_s: float = Field(10.0, ge=0.1, le=600)
    # Backups and fixity (quire-central backup / scrub): the restic repository and its password file (0600),
    # a description of the off-site copy a damaged blob can also be restored from, and the period in which
    # the nightly scrub re-reads every blob once.
    backup_repo: str | None = None
    backup_password_file: str | None = None
    offsite_copy: str | None = None
    scrub_period_days: int = Field(30, ge=1, le=3660)


class CentralConfig(CentralSettings):
    """The archive's settings with its home: loaded once, passed down."""

    home: Path

    @property
    def key_path(self) -> Path:
        return self.home / "keys" / "central.key"

    @property
    def db_path(self) -> Path:
        return self.home / "central.db"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"


def resolve_home(home: str | os.PathLike | None) -> Path:
    """``--home``, else $QUIRE_CENTRAL_HOME, else /var/lib/quire/central."""
    if home:
        return Path(home)
    return Path(os.environ.get("QUIRE_CENTRAL_HOME") or DEFAULT_HOME)


def load(home: str | os.PathLike | None = None, **overrides) -> CentralConfig:
    """Read ``central.toml`` from the home (or /etc/quire), validate it, apply overrides (validated too)."""
    home_path = resolve_home(home)
    path = next((p for p in (home_path / "central.toml", SYSTEM_CONFIG) if p.exists()), None)
    return settings.load(CentralSettings, CentralConfig, path, home_path, overrides, ConfigError)
