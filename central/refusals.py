"""Refusals in the audit log: who was refused what and why, at most a few entries per caller a minute.

A refusal beyond a caller's share (or beyond the archive's, when many callers flood it) is counted,
not written, and the count rides on that caller's next entry as ``suppressed``; so a flood cannot
fill the disk and the log still says how many refusals there were. Entries are appended in a
transaction of their own, after the refused work has rolled back, and writing one never fails the
refusal itself, nor holds it up: when another process holds the catalogue's writer lock (on PostgreSQL,
any other transaction of any archive process), the caller is answered at once and the entry is appended
by a thread of its own once the lock is free (lost only if the process ends first; the WARNING line stays).
"""

import logging
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass

import grpc

from quire import callauth
from quire.canonical import sha256_hex

from . import audit
from .archive import Archive
from .errors import CentralError
from .store.catalogue import WriterBusy

log = logging.getLogger("quire.central")

PER_CALLER = 10      # refusal entries a window for one caller
OVERALL = 300        # refusal entries a window for the whole archive, whoever the callers are
WINDOW_S = 60.0
TRACKED = 10_000     # callers remembered at once; beyond, the new ones share one count
CLAIM_CHARS = 64     # an unauthenticated claim is logged only this long: it is the caller's text
# The resumable upload's own turns, not refusals: offer first, upload what is missing, resume from
# the committed offset (and "no such dossier" answers a lookup, it refuses nobody).
NOT_REFUSALS = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE}


class _Quota:
    """Fixed windows per caller and per archive; what does not fit is counted per caller."""

    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[tuple, tuple[float, int]] = {}   # key → (window start, entries in it)
        self._counted: dict[tuple, int] = {}                  # caller → refusals not written since its last entry

    def take(self, home: str, caller: str) -> int | None:
        """None when this refusal is only counted; else the count its entry carries."""
        now = time.monotonic()
        with self._lock:
            if len(self._windows) > TRACKED:
                self._windows = {k: w for k, w in self._windows.items() if now - w[0] < WINDOW_S}
            own, whole = (home, caller), (home, None)
            if own not in self._counted and len(self._counted) >= TRACKED:
                own = (home, "others")
            if self._used(own, now) >= PER_CALLER or self._used(whole, now) >= OVERALL:
                self._counted[own] = self._counted.get(own, 0) + 1
                if self._counted[own] == 1:
                    log.warning("refusals of %s beyond %d a minute (or %d for the whole archive) are counted, "
                                "not logged one by one", own[1], PER_CALLER, OVERALL)
                return None
            for key in (own, whole):
                start, used = self._windows[key]
                self._windows[key] = (start, used + 1)
            return self._counted.pop(own, 0)

    def _used(self, key: tuple, now: float) -> int:
        start, used = self._windows.get(key, (now, 0))
        if now - start >= WINDOW_S:
            start, used = now, 0
        self._windows[key] = (start, used)
        return used


_quota = _Quota()


def record(archive: Archive, event: str, subject: str, fields: dict, by: str) -> bool:
    """Append a refusal entry unless ``by``'s share of the minute is spent (then it is counted); True
    when written. Call it outside any transaction; it never raises."""
    if (archive.config.home / "replica.json").exists():
        # An off-site copy's log is its primary's, entry for entry (central/replica.py): the journal keeps it.
        log.warning("%s refused on this off-site copy (%s): %s", subject, by, " ".join(str(fields.get("reason")).split()))
        return False
    carried = _quota.take(str(archive.config.home), _rate_key(by))
    if carried is None:
        return False
    if carried:
        fields = {**fields, "suppressed": carried}
    entry = (archive, event, subject, fields, by)
    if _late.holds(archive):   # after the ones still waiting, in order
        _late.add(entry)
        return True
    try:
        return _write(*entry, wait=False)
    except WriterBusy:
        _late.add(entry)
        return True


def _write(archive: Archive, event: str, subject: str, fields: dict, by: str, wait: bool) -> bool:
    """Append one refusal entry; False (logged) when it could not be; WriterBusy when told not to wait."""
    try:
        with archive.catalogue.transaction(wait=wait) as db:
            audit.record(db, archive, event, subject, fields, by=by)
    except WriterBusy:
        raise
    except Exception as exc:  # noqa: BLE001 - the refusal stands whatever the log does
        log.error("a refusal of %s (%s) could not be written to the audit log: %s", by, subject, exc)
        return False
    return True


class _Late:
    """Refusal entries that found the writer lock held, appended in order by one thread that waits for it
    and ends when none is left."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: deque[tuple] = deque()
        self._thread: threading.Thread | None = None

    def holds(self, archive: Archive) -> bool:
        with self._lock:
            return any(entry[0] is archive for entry in self._entries)

    def add(self, entry: tuple) -> None:
        with self._lock:
            self._entries.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="quire-late-refusals", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._entries:
                    self._thread = None
                    return
                entry = self._entries[0]
            _write(*entry, wait=True)
            with self._lock:
                self._entries.popleft()


_late = _Late()


def logged(archive: Archive, exc: CentralError, event: str, subject: str, fields: dict, by: str) -> CentralError:
    """Record ``exc`` as a refusal (its message is the reason) and return it marked, to be raised."""
    exc.audited = record(archive, event, subject, {**fields, "reason": str(exc)}, by)
    return exc


def _rate_key(by: str) -> str:
    """Who a refusal is counted against: an unauthenticated peer by its address, not its port."""
    return by.rsplit(":", 1)[0] if by.startswith("peer:") else by


# ---- at the gRPC door ---------------------------------------------------------------------------

@dataclass
class Call:
    """What the door knows of the call in progress."""

    peer: str
    claimed: str = ""           # the station the call says it comes from, proved or not
    request: object = None      # the request message (a stream's messages are not kept)
    who: str | None = None      # "station:ID" or "user:ID" once the call is authenticated


_current: ContextVar[Call | None] = ContextVar("quire_refusal_call", default=None)


def call_begins(context, request) -> None:
    """Note the call a handler thread now serves (each call's first step replaces the last one's note)."""
    message = request if hasattr(request, "DESCRIPTOR") else None
    claimed = dict(context.invocation_metadata() or ()).get(callauth.HEADER_STATION) or \
        getattr(message, "station_id", "")
    _current.set(Call(context.peer(), str(claimed)[:CLAIM_CHARS], message))


def authenticated(label: str) -> None:
    """The current call turned out to come from ``label`` ("station:ID", "user:ID")."""
    call = _current.get()
    if call is not None:
        call.who = label


def peer_label(context) -> str:
    return f"peer:{context.peer()}"


def source(context) -> str:
    """The caller's address without its port ("ipv4:192.0.2.7"): what a stranger's calls are counted by."""
    return _rate_key(peer_label(context)).removeprefix("peer:")


def at_door(archive: Archive, method: str, exc: CentralError) -> None:
    """A refused call: in the audit log (unless it was logged where it was refused) and one WARNING line."""
    if exc.code in NOT_REFUSALS:
        log.info("%s: %s", method, exc)
        return
    call = _current.get() or Call("unknown")
    by = call.who or f"peer:{call.peer}"
    if exc.audited is None:
        fields = {"method": method, "refusal": type(exc).__name__, "reason": str(exc), "peer": call.peer}
        if call.claimed and not call.who:
            fields["claimed_station"] = call.claimed
        bundle_id = _bundle_id(call.request, exc)
        if bundle_id:
            fields["bundle_id"] = bundle_id
        exc.audited = record(archive, "call.refused", bundle_id or by, fields, by)
    if exc.audited:
        log.warning("%s refused (%s): %s", method, by if call.who else f"{by}, unauthenticated",
                    " ".join(str(exc).split()))


def _bundle_id(request, exc: CentralError) -> str | None:
    """The bundle a refused call was about, where the request or the refusal names it."""
    if getattr(exc, "bundle_id", None):
        return exc.bundle_id
    fields = request.DESCRIPTOR.fields_by_name if request is not None else {}
    if "bundle_id" in fields and request.bundle_id:
        return request.bundle_id[:CLAIM_CHARS]
    if "manifest" in fields and request.manifest:
        return sha256_hex(request.manifest)   # a bundle's id is its manifest's digest
    return None
