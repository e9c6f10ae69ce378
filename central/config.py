"""Central configuration: loaded once from TOML, validated, passed down."""

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .errors import ConfigError

DEFAULT_HOME = Path("/var/lib/quire/central")
SYSTEM_CONFIG = Path("/etc/quire/central.toml")


@dataclass(frozen=True)
class CentralConfig:
    home: Path
    listen: str = "127.0.0.1:7443"
    workers: int = 8
    max_chunk_bytes: int = 4 << 20
    insecure: bool = False                   # plain-text gRPC, for a lab only
    advertise: bool = True                   # zeroconf _quire._tcp with the key fingerprint
    zeroconf_interfaces: list | str = "all"  # or addresses, e.g. ["127.0.0.1"] for tests and the demo

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
    """Read ``central.toml`` from the home (or /etc/quire), validate it, apply overrides."""
    home_path = resolve_home(home)
    data: dict = {}
    where = "defaults"
    for path in (home_path / "central.toml", SYSTEM_CONFIG):
        if path.exists():
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file and retry") from None
            where = str(path)
            break
    known = {f.name for f in fields(CentralConfig)} - {"home"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    cfg = CentralConfig(home=home_path, **data)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = replace(cfg, **overrides) if overrides else cfg
    if ":" not in cfg.listen:
        raise ConfigError(f"{where}: listen {cfg.listen!r} must be HOST:PORT")
    return cfg
