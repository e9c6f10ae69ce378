"""A station's home: its key, its store and its identity, opened together."""

import pwd
import re
from contextlib import contextmanager
from dataclasses import dataclass

import nacl.signing

from quire import keys

from .config import StationConfig
from .errors import ConfigError, NeedsTechnician, NotInitialised, StationError
from .store import Store

_STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass
class Station:
    config: StationConfig
    store: Store
    key: nacl.signing.SigningKey
    station_id: str

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    def close(self) -> None:
        self.store.close()


def owner(config: StationConfig) -> str:
    """The user the station home (or, before init, the directory to hold it) belongs to."""
    uid = next(path for path in (config.home, *config.home.parents) if path.exists()).stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@contextmanager
def private(config: StationConfig):
    """A file of the station this user may not read calls for the station's user, and is no fault of the station."""
    try:
        yield
    except PermissionError:
        raise NeedsTechnician(config.home, owner(config)) from None


def init(config: StationConfig, station_id: str | None = None) -> Station:
    """Create the station key (0600) and store; a second init keeps both and says so."""
    with private(config):
        return _init(config, station_id)


def _init(config: StationConfig, station_id: str | None) -> Station:
    config.home.mkdir(parents=True, exist_ok=True)
    if config.key_path.exists():
        station = open_station(config)
        if station_id and station_id != station.station_id:
            station.close()
            raise ConfigError(
                f"this station is already initialised as {station.station_id}; "
                "its id cannot change (the central service knows it by that id)"
            )
        return station
    key = keys.create_key_file(config.key_path)
    sid = station_id or "st-" + keys.key_id(bytes(key.verify_key))[:8]
    if not _STATION_ID.fullmatch(sid):
        raise ConfigError(f"station id {sid!r}: use letters, digits, '.', '_' or '-' (max 63)")
    store = Store(config.db_path, config.pages_dir)
    store.set_meta("station_id", sid)
    return Station(config, store, key, sid)


def open_station(config: StationConfig) -> Station:
    """Open an initialised station; tell the user to run ``init`` when it is not, or whom to ask when the
    station's files are not theirs to read."""
    with private(config):
        return _open(config)


def _open(config: StationConfig) -> Station:
    if not config.key_path.exists() or not config.db_path.exists():
        raise NotInitialised(
            f"no station at {config.home}; run 'quire-station init' (or pass --home / QUIRE_STATION_HOME)"
        )
    try:
        key = keys.load_key_file(config.key_path)
    except keys.ContractError as exc:
        raise ConfigError(str(exc)) from None
    store = Store(config.db_path, config.pages_dir)
    sid = store.get_meta("station_id")
    if not sid:
        store.close()
        raise StationError(f"station store {config.db_path} has no station id; restore it from backup")
    return Station(config, store, key, sid)
