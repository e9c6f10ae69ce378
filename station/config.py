"""Station configuration: loaded once from TOML, validated, passed down."""

import getpass
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .capture.driver import PAGE_TIMEOUT_S
from .errors import ConfigError
from .pipeline import PipelineConfig

DEFAULT_HOME = Path("/var/lib/quire/station")
SYSTEM_CONFIG = Path("/etc/quire/station.toml")


@dataclass(frozen=True)
class StationConfig:
    home: Path
    central: str | None = None              # HOST:PORT of the central service
    insecure: bool = False                  # plain-text gRPC, for a lab only (no TLS, no pin)
    sync_attempts: int = 5                  # tries per bundle per sync run before it waits
    backoff_base_s: float = 0.5             # first retry delay; doubles, with full jitter
    backoff_max_s: float = 60.0
    retention_days: float = 30.0            # committed pages kept locally this long, then purged
    zeroconf_interfaces: list | str = "all"  # "all", or addresses to browse on (tests: ["127.0.0.1"])
    operator: str = field(default_factory=lambda: _default_operator())
    source: str = "synthetic"               # default capture source for `scan`
    dpi: int = 300
    sane_options: dict = field(default_factory=dict)  # SANE option name → value, set on open
    scanner_page_timeout_s: float = PAGE_TIMEOUT_S  # a page not delivered by then: the scanner driver is hung
    pipeline: PipelineConfig = PipelineConfig()
    sync_timeout_s: float = 30.0
    chunk_bytes: int = 2 << 20               # upload chunk (bench/sync.py: 2 MiB beat 1 and 3 MiB)
    control_socket: str | None = None       # the daemon's unix socket (default HOME/control.sock)
    control_group: str | None = None        # group, besides root and the daemon's user, that may use it
    button_poll_s: float = 0.25             # how often the idle daemon reads the scanner's buttons
    sync_interval_s: float = 60.0           # how often the daemon offers queued bundles to central
    profiles_dir: str | None = None         # extra scanner profiles (*.toml) beside hardware/profiles
    announce: bool = False                  # the daemon announces itself by zeroconf (id, state, outbox)

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
    """Read ``station.toml`` from the home (or /etc/quire), validate it, apply overrides."""
    home_path = resolve_home(home)
    candidates = [config_file] if config_file else [home_path / "station.toml", SYSTEM_CONFIG]
    data: dict = {}
    for path in candidates:
        if path and path.exists():
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file and retry") from None
            data["_path"] = str(path)
            break
        if config_file:
            raise ConfigError(f"config file {config_file} does not exist")
    cfg = _from_dict(home_path, data)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **overrides) if overrides else cfg


def _from_dict(home: Path, data: dict) -> StationConfig:
    where = data.pop("_path", "config")
    known = {f.name for f in fields(StationConfig)} - {"home"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    pipeline_data = data.pop("pipeline", {})
    pipe_known = {f.name for f in fields(PipelineConfig)}
    bad = sorted(set(pipeline_data) - pipe_known)
    if bad:
        raise ConfigError(f"{where}: unknown [pipeline] setting(s) {', '.join(bad)}; known: {', '.join(sorted(pipe_known))}")
    try:
        cfg = StationConfig(home=home, pipeline=PipelineConfig(**pipeline_data), **data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    problems = []
    if not isinstance(cfg.dpi, int) or not 50 <= cfg.dpi <= 2400:
        problems.append(f"dpi {cfg.dpi!r} must be a whole number between 50 and 2400")
    if not isinstance(cfg.scanner_page_timeout_s, (int, float)) or not 5 <= cfg.scanner_page_timeout_s <= 3600:
        problems.append(f"scanner_page_timeout_s {cfg.scanner_page_timeout_s!r} must be between 5 and 3600 seconds")
    if not isinstance(cfg.chunk_bytes, int) or not 4096 <= cfg.chunk_bytes <= 4 << 20:
        problems.append("chunk_bytes must be between 4096 and 4194304")
    if cfg.central is not None and ":" not in str(cfg.central):
        problems.append(f"central {cfg.central!r} must be HOST:PORT")
    if not isinstance(cfg.button_poll_s, (int, float)) or not 0 < cfg.button_poll_s <= 10:
        problems.append("button_poll_s must be more than 0 and at most 10 seconds")
    if not isinstance(cfg.sync_interval_s, (int, float)) or cfg.sync_interval_s < 1:
        problems.append("sync_interval_s must be at least 1 second")
    if len(str(cfg.control_socket_path).encode()) > 107:  # sun_path holds 108 bytes with the NUL
        problems.append(f"control socket path {cfg.control_socket_path} is too long for a unix socket; "
                        "set control_socket to a shorter path such as /run/quire/station.sock")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return cfg


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"
