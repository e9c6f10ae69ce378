"""Registering the stations allowed to upload, and looking them up."""

import contextvars
import logging
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import grpc

from quire import callauth, keys
from quire.db import utcnow

from . import audit, refusals
from .archive import Archive
from .errors import CentralError, NotEnrolled, SignatureInvalid
from .limits import STATION_ID, BadRequest
from .store import audit_log as store_audit_log
from .store import dossiers as store_dossiers
from .store import stations as store_stations

audit_log = logging.getLogger("quire.central.stations")

PENDING_PER_SOURCE = 3          # enrolments waiting for approval asked from one address
PENDING_TOTAL = 100             # from all addresses together
PENDING_EXPIRE_S = 24 * 3600    # an unapproved request is dropped after this; its station asks again
SHOWN_CHARS = 64                # of a waiting request's station id and hostname, in a listing


class TooManyPending(CentralError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class _Sources:
    """Which waiting enrolments each address asked for — kept by this process only: the total bound and
    the expiry hold across restarts, and a restart is not something a stranger can cause."""

    def __init__(self):
        self._lock = threading.Lock()
        self._codes: dict[tuple[str, str], set[str]] = {}

    def count(self, home: str, source: str, waiting: set[str]) -> int:
        """How many of ``waiting`` were asked from ``source`` (forgetting codes no longer waiting)."""
        with self._lock:
            self._codes = {key: codes & waiting for key, codes in self._codes.items()
                           if key[0] != home or codes & waiting}
            return len(self._codes.get((home, source), ()))

    def add(self, home: str, source: str, code: str) -> None:
        with self._lock:
            self._codes.setdefault((home, source), set()).add(code)


_sources = _Sources()


def add(archive: Archive, station_id: str, public_key_hex: str, unit: str, by: str | None = None) -> dict:
    """Register a station's public key for a unit (enrolment with a pairing code comes later)."""
    _check_id(station_id)
    try:
        public_key = bytes.fromhex(public_key_hex.strip())
    except ValueError:
        public_key = b""
    if len(public_key) != 32:
        raise BadRequest(
            "station key must be 64 hex digits (the Ed25519 public key 'quire-station init' prints)"
        )
    if not unit:
        raise CentralError("a station is registered into a unit: pass --unit")
    with archive.catalogue.transaction() as db:
        existing = store_stations.by_id_or_key(db, station_id, public_key)
        if existing:
            if existing["id"] == station_id and bytes(existing["public_key"]) == public_key:
                row = get(archive, station_id)
                audit.station_registered(archive, row, by=by)  # logged once per station and key
                return row
            raise CentralError(
                f"station {existing['id']} is already registered with "
                f"{'another key' if existing['id'] == station_id else 'this key'}; "
                "re-keying a station is an explicit operator action"
            )
        store_stations.add(db, station_id, public_key, unit, utcnow())
    row = get(archive, station_id)
    audit.station_registered(archive, row, by=by)  # every way a station gets registered passes here
    return row


def _check_id(station_id: str) -> None:
    if not STATION_ID.fullmatch(station_id):
        raise BadRequest(f"station id {station_id[:SHOWN_CHARS]!r}: use up to 63 letters, digits, '.', '_' or '-', "
                         "beginning with a letter or digit")


# The row authentication read for the call in progress: the use cases it calls take it rather than read it
# again (a bundle's offer, upload and commit each read it up to three times, a query each on PostgreSQL).
_proven: contextvars.ContextVar[dict | None] = contextvars.ContextVar("proven_station", default=None)


@contextmanager
def proven(row: dict):
    """While the block runs, ``active`` answers for ``row``'s station with this row (read by the call's
    authentication, already checked active), not with another read."""
    token = _proven.set(row)
    try:
        yield
    finally:
        _proven.reset(token)


def get(archive: Archive, station_id: str) -> dict:
    row = store_stations.get(archive.catalogue, station_id)
    if row is None:
        raise NotEnrolled(
            f"station {station_id!r} is not registered with this archive; an administrator registers "
            "it with 'quire-central stations add ID --key KEY --unit UNIT'"
        )
    return row


def active(archive: Archive, station_id: str) -> dict:
    """The station's row, refusing unknown and revoked stations."""
    row = _proven.get()
    if row is not None and row["id"] == station_id:
        return dict(row)
    row = get(archive, station_id)
    refuse_inactive(row)
    return row


def refuse_inactive(row: dict) -> None:
    """Refuse a revoked or suspended station (tell it only once it has proved it holds its key)."""
    station_id = row["id"]
    if row["revoked_at"]:
        raise NotEnrolled(f"station {station_id} was revoked at {row['revoked_at']}; its uploads are refused")
    if row["suspended_at"]:
        raise NotEnrolled(f"station {station_id} is suspended since {row['suspended_at']} pending its revocation; "
                          "its uploads are refused")


class WrongUnit(NotEnrolled):
    """A station uploading into a dossier of a unit it does not serve."""

    scope = "bundle"   # the station's other bundles may be for its own units


def check_unit(archive: Archive, station: dict, dossier: dict, bundle_id: str) -> None:
    """Refuse (and log, once per bundle) an upload into a dossier of another unit than the station's."""
    declared = dossier.get("unit")
    owner = store_dossiers.unit_of(archive.catalogue, dossier["archive_no"]) or declared
    if owner is None or owner == station["unit"]:
        return
    message = (f"dossier {dossier['archive_no']} belongs to unit {owner}; station {station['id']} uploads only "
               f"into unit {station['unit']} — nothing from this bundle was accepted")
    refusal = WrongUnit(message)
    if store_audit_log.newest(archive.catalogue, "upload.refused", bundle_id):
        refusal.audited = True  # at its first offer: the station offers it again at every sync
        raise refusal
    raise refusals.logged(archive, refusal, "upload.refused", bundle_id,
                          {"bundle_id": bundle_id, "archive_no": dossier["archive_no"], "station_id": station["id"],
                           "unit": station["unit"], "dossier_unit": owner}, by=f"station:{station['id']}")


def listing(archive: Archive) -> list[dict]:
    out = store_stations.every(archive.catalogue)
    for row in out:
        row["fingerprint"] = keys.fingerprint(bytes(row.pop("public_key")))
    return out


def request_enrolment(archive: Archive, station_id: str, public_key: bytes, hostname: str,
                      time_ms: int, signature: bytes, source: str) -> tuple[str, str, str | None]:
    """Record a signed enrolment request from address ``source``; returns (state, pairing code, unit when
    approved). Waiting requests are bounded per address and in all, and expire."""
    _check_id(station_id)
    if len(public_key) != 32:
        raise BadRequest("station key must be a 32-byte Ed25519 public key")
    try:
        keys.verify(public_key, keys.ENROL_CONTEXT,
                    callauth.enrol_payload(station_id, public_key, hostname, time_ms), signature,
                    "enrolment request")
    except keys.ContractError as exc:
        raise SignatureInvalid(str(exc)) from None
    code = callauth.pairing_code(archive.public_key, public_key)
    with archive.catalogue.transaction() as db:
        _expire(db, archive)
    with archive.catalogue.transaction() as db:
        row = store_stations.by_id_or_key(db, station_id, public_key)
        if row:
            if row["id"] != station_id or bytes(row["public_key"]) != public_key:
                raise CentralError(
                    f"station {row['id']} is already enrolled with "
                    f"{'another key' if row['id'] == station_id else 'this key'}; "
                    "re-keying a station is an explicit operator action")
            if row["revoked_at"]:
                raise NotEnrolled(f"station {station_id} was revoked at {row['revoked_at']}; it cannot re-enrol itself")
            return "approved", code, row["unit"]
        if store_stations.other_enrolment(db, station_id, code):
            raise CentralError(f"another key already asked to enrol as {station_id}; "
                               "an operator must clear it ('quire-central stations pending')")
        if store_stations.enrolment(db, code):
            return "pending", code, None   # the station asking again while it waits
        _admit(db, archive, source)
        store_stations.add_enrolment(db, code, station_id, public_key, hostname, utcnow())
        audit.record(db, archive, "station.enrol_request", station_id,
                     {"station_id": station_id, "key": keys.fingerprint(public_key), "hostname": hostname,
                      "pairing_code": code, "source": source}, by=f"peer:{source}")
        _sources.add(str(archive.config.home), source, code)
    audit_log.info("station %s asked to enrol from %s (%s), pairing code %s", station_id, hostname, source, code)
    return "pending", code, None


def _admit(db, archive: Archive, source: str) -> None:
    """Refuse another waiting enrolment beyond the bounds per address and in all."""
    waiting = store_stations.enrolment_codes(db)
    hours = PENDING_EXPIRE_S // 3600
    if _sources.count(str(archive.config.home), source, waiting) >= PENDING_PER_SOURCE:
        raise TooManyPending(f"{PENDING_PER_SOURCE} stations are already waiting for approval from this address; "
                             f"an operator approves them ('quire-central stations pending', then 'stations approve'), "
                             f"or they expire after {hours} h — then ask again")
    if len(waiting) >= PENDING_TOTAL:
        raise TooManyPending(f"{PENDING_TOTAL} stations are already waiting for approval; an operator approves "
                             f"them ('quire-central stations pending'), or they expire after {hours} h — then ask again")


def _expire(db, archive: Archive) -> None:
    """Drop requests waiting longer than PENDING_EXPIRE_S, each noted in the audit log."""
    for row in store_stations.enrolments_before(db, _cutoff()):
        store_stations.remove_enrolment(db, row["code"])
        audit.record(db, archive, "station.enrol_expired", row["station_id"],
                     {"station_id": row["station_id"], "pairing_code": row["code"]}, by="archive")


def _cutoff() -> str:
    """The request time before which a waiting enrolment has expired (in utcnow's form, which sorts)."""
    then = datetime.now(timezone.utc) - timedelta(seconds=PENDING_EXPIRE_S)
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pending(archive: Archive, limit: int = PENDING_TOTAL) -> list[dict]:
    """The ``limit`` oldest enrolments waiting, unexpired (station id and hostname cut to SHOWN_CHARS)."""
    rows = store_stations.enrolments_since(archive.catalogue, _cutoff(), limit, SHOWN_CHARS)
    for row in rows:
        row["fingerprint"] = keys.fingerprint(bytes(row.pop("public_key")))
    return rows


def pending_count(archive: Archive) -> int:
    """How many enrolments wait, unexpired."""
    return store_stations.count_enrolments_since(archive.catalogue, _cutoff())


def approve(archive: Archive, code: str, unit: str, by: str | None = None) -> dict:
    """Enrol the station whose pairing code the operator compared and typed in."""
    if not unit:
        raise CentralError("a station is enrolled into a unit: pass --unit")
    with archive.catalogue.transaction() as db:
        row = store_stations.enrolment(db, code.strip())
        if row is None:
            raise CentralError(f"no station is waiting with pairing code {code}; "
                               "'quire-central stations pending' lists the waiting ones")
        store_stations.remove_enrolment(db, code.strip())
    return add(archive, row["station_id"], bytes(row["public_key"]).hex(), unit, by=by)


def suspend(db, archive: Archive, station_id: str, by: str, change_id: int) -> None:
    """Inside a transaction: stop a station's uploads at once while its revocation awaits a second person."""
    store_stations.suspend(db, station_id, utcnow())
    audit.record(db, archive, "station.suspend", station_id, {"station_id": station_id, "change": change_id}, by=by)
    audit_log.warning("station %s suspended by %s pending revocation #%s", station_id, by, change_id)


def reinstate(db, archive: Archive, station_id: str, by: str, change_id: int) -> None:
    store_stations.reinstate(db, station_id)
    audit.record(db, archive, "station.reinstate", station_id, {"station_id": station_id, "change": change_id}, by=by)


def revoke(db, archive: Archive, station_id: str, by: str, change_id: int) -> None:
    """Inside a transaction: revoke for good (the second person approved); later calls are refused."""
    store_stations.revoke(db, station_id, utcnow(), by)
    audit.record(db, archive, "station.revoke", station_id, {"station_id": station_id, "change": change_id}, by=by)
    audit_log.warning("station %s revoked by %s (change #%s)", station_id, by, change_id)
