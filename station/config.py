"""Station configuration: loaded once from TOML, validated, passed down."""

import getpass
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictStr, model_validator

from quire import settings
from quire.settings import Settings

from .capture.driver import PAGE_TIMEOUT_S
from .errors import ConfigError
from .pipeline import PipelineConfig
from .pipeline.limits import MAX_DPI, MIN_DPI

DEFAULT_HOME = Path("/var/lib/quire/station")
SYSTEM_CONFIG = Path("/etc/quire/station.toml")


def _central(value: str | tuple[str, ...]) -> str:
    """The archive's addresses as one comma-separated text: each entry HOST:PORT, none repeated."""
    listed = [value] if isinstance(value, str) else list(value)
    if isinstance(value, str) and "," in value:
        listed = value.split(",")
    if not listed:
        raise ValueError('is an empty list; give at least one HOST:PORT, e.g. central = ["archive-1:7443"]')
    example = 'central = ["archive-1.example:7443", "archive-2.example:7443"]'
    for n, entry in enumerate(listed):
        where = f"entry {n + 1} ({entry!r})" if len(listed) > 1 else repr(entry)
        if "://" in entry or re.match(r"(ipv4|ipv6|dns|unix):", entry):
            raise ValueError(f"{where} is a gRPC target, not HOST:PORT; write the name alone "
                             '(central = "archive.example:7443": a name with several addresses is spread over all '
                             f"of them) or list the addresses: {example}")
        problem = settings.host_port_problem(entry)
        if problem:
            raise ValueError(f"{where} {problem}; several processes of one archive go in a list: {example}")
    if len(set(listed)) < len(listed):
        raise ValueError(f"lists {', '.join(sorted({e for e in listed if listed.count(e) > 1}))} twice; "
                         "give each archive process once")
    return ",".join(listed)


# HOST:PORT of the central archive, or a list of them (several processes of one archive; a name that
# resolves to several addresses is spread over all of them too). Kept as one comma-separated text.
CentralAddresses = Annotated[StrictStr | settings.Texts, AfterValidator(_central)]


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


class StationSettings(Settings):
    """What station.toml may say: every key, its type and its range."""

    central: CentralAddresses | None = None  # HOST:PORT of the central service, or a list of them
    insecure: bool = False                  # plain-text gRPC, for a lab only (no TLS, no pin)
    backoff_base_s: float = Field(0.5, gt=0, le=3600)  # first retry delay; doubles, with full jitter
    backoff_max_s: float = Field(60.0, gt=0, le=86400)
    sync_retry_span_s: float = Field(30.0, ge=0, le=3600)  # a broken call is retried this long, backing off
    retention_days: float = Field(30.0, ge=0)  # committed pages kept locally this long, then purged
    # "all", or addresses to browse on (tests: ["127.0.0.1"])
    zeroconf_interfaces: Literal["all"] | list[str] = "all"
    operator: str = Field(default_factory=_default_operator, min_length=1)
    source: str = Field("synthetic", min_length=1)  # default capture source for `scan`
    dpi: int = Field(300, ge=MIN_DPI, le=MAX_DPI)
    # SANE option name → value, set on open
    sane_options: dict[str, bool | int | float | str] = Field(default_factory=dict)
    # a page not delivered by then: the scanner driver is hung
    scanner_page_timeout_s: float = Field(PAGE_TIMEOUT_S, ge=5, le=3600)
    pipeline: PipelineConfig = PipelineConfig()
    sync_timeout_s: float = Field(30.0, gt=0, le=3600)
    chunk_bytes: int = Field(2 << 20, ge=4096, le=4 << 20)  # upload chunk (bench/sync.py: 2 MiB beat 1 and 3 MiB)
    control_socket: str | None = None       # the daemon's unix socket (default HOME/control.sock)
    control_group: str | None = None        # group, besides root and the daemon's user, that may use it
    button_poll_s: float = Field(0.25, gt=0, le=10)  # how often the idle daemon reads the scanner's buttons
    sync_interval_s: float = Field(60.0, ge=1)  # how often the daemon offers queued bundles to central
    profiles_dir: str | None = None         # extra scanner profiles (*.toml) beside hardware/profiles
    announce: bool = False                  # the daemon announces itself by zeroconf (id, state, outbox)
    # A scan keeps its batch open for the operator's review (rescan, insert, remove pages) instead of sealing it.
    review_before_seal: bool = False
    # The kiosk page the daemon serves (plain HTTP): loopback by default (the station's own touchscreen, or a
    # browser through an SSH tunnel); a LAN address only when the technician sets one. Port 0: any free port.
    kiosk: bool = True
    kiosk_host: str = Field("127.0.0.1", min_length=1)
    kiosk_port: int = Field(8470, ge=0, le=65535)


class StationConfig(StationSettings):
    """The station's settings with its home: loaded once, passed down."""

    home: Path

    @model_validator(mode="after")
    def _socket_fits(self) -> "StationConfig":
        if len(str(self.control_socket_path).encode()) > 107:  # sun_path holds 108 bytes with the NUL
            raise ValueError(f"control socket path {self.control_socket_path} is too long for a unix socket; "
                             "set control_socket to a shorter path such as /run/quire/station.sock")
        return self

    @property
    def control_socket_path(self) -> Path:
        return Path(self.control_socket) if self.control_socket else self.home / "control.sock"

    @property
    def queue_path(self) -> Path:
        return self.home / "queue.json"

    @property
    def key_path(self) -> Path:
        return self.home / "keys" / "station.key"

    @property
    def db_path(self) -> Path:
        return self.home / "station.db"

    @property
    def pages_dir(self) -> Path:
        return self.home / "pages"


def resolve_home(home: str | os.PathLike | None) -> Path:
    """The station home: ``--home``, else $QUIRE_STATION_HOME, else /var/lib/quire/station."""
    if home:
        return Path(home)
    return Path(os.environ.get("QUIRE_STATION_HOME") or DEFAULT_HOME)


def load(home: str | os.PathLike | None = None, config_file: Path | None = None, **overrides) -> StationConfig:
    """Read ``station.toml`` from the home (or /etc/quire), validate it, apply overrides (validated too)."""
    home_path = resolve_home(home)
    if config_file and not config_file.exists():
        raise ConfigError(f"config file {config_file} does not exist")
    candidates = [config_file] if config_file else [home_path / "station.toml", SYSTEM_CONFIG]
    path = next((p for p in candidates if p.exists()), None)
    return settings.load(StationSettings, StationConfig, path, home_path, overrides, ConfigError)
