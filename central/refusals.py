"""Refusals in the audit log: who was refused what and why, at most a few entries per caller a minute.

A refusal beyond a caller's share (or beyond the archive's, when many callers flood it) is counted,
not written, and the count rides on that caller's next entry as ``suppressed``; so a flood cannot
fill the disk and the log still says how many refusals there were. Entries are appended in a
transaction of their own, after the refused work has rolled back, and writing one never fails the
refusal itself, nor holds it up: when another process holds the catalogue's writer lock (on PostgreSQL,
any other transaction of any archive process), the caller is answered at once and the entry is appended
by a thread of its own once the lock is free. A stopping server waits a few seconds for those (``settle``)
and logs the ones it could not write; the WARNING line stays either way.
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
SETTLE_S = 5.0       # how long a stopping server waits for refusal entries held up by the writer lock
FIRST_PAUSE_S, LAST_PAUSE_S = 0.02, 0.2   # between tries of the writer lock for those entries
# The resumable upload's own turns, not refusals: offer first, upload what is missing, resume from
# the committed offset (and "no such dossier" answers a lookup, it refuses nobody). An outage of the
# archive's own stores (UNAVAILABLE) refuses nobody either: it goes to the service log, not the audit log.
NOT_REFUSALS = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
                grpc.StatusCode.UNAVAILABLE}


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
    """Refusal entries that found the writer lock held, appended in order by one thread that tries the lock
    until it is free and ends when none is left.

    The thread tries (``wait=False``) rather than waits for the lock, so that a stopping server can give up
    on an entry: a thread blocked in the lock wait cannot be called back, and on SQLite it would hold the
    catalogue's own lock, which closing the catalogue takes, for as long as SQLite's busy wait lasts."""

    def __init__(self):
        self._changed = threading.Condition()
        self._entries: deque[tuple] = deque()
        self._thread: threading.Thread | None = None
        self._trying = False    # the thread is trying to write the first entry

    def holds(self, archive: Archive) -> bool:
        with self._changed:
            return self._holds(archive)

    def _holds(self, archive: Archive) -> bool:
        return any(entry[0] is archive for entry in self._entries)

    def add(self, entry: tuple) -> None:
        with self._changed:
            self._entries.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="quire-late-refusals", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        pause = FIRST_PAUSE_S
        while True:
            with self._changed:
                if not self._entries:
                    self._thread = None
                    return
                entry, self._trying = self._entries[0], True
            try:
                _write(*entry, wait=False)
                busy = False
            except WriterBusy:
                busy = True
            with self._changed:
                self._trying = False
                if not busy and self._entries and self._entries[0] is entry:
                    self._entries.popleft()
                self._changed.notify_all()
                if busy:
                    self._changed.wait(pause)
            pause = min(pause * 2, LAST_PAUSE_S) if busy else FIRST_PAUSE_S

    def settle(self, archive: Archive, timeout_s: float) -> list[tuple]:
        """Wait up to ``timeout_s`` for ``archive``'s entries to be written; those that were not, taken off."""
        with self._changed:
            if self._changed.wait_for(lambda: not self._holds(archive), timeout_s):
                return []
            # A try does not wait for another process; it may wait for this one's threads, a moment.
            self._changed.wait_for(lambda: not self._trying, 1.0)
            left = [entry for entry in self._entries if entry[0] is archive]
            self._entries = deque(entry for entry in self._entries if entry[0] is not archive)
            self._changed.notify_all()
            return left


_late = _Late()


def settle(archive: Archive) -> None:
    """Before ``archive`` closes: wait up to SETTLE_S for its refusal entries still waiting for the writer
    lock, and log those that could not be written (how many, and which)."""
    left = _late.settle(archive, SETTLE_S)
    if left:
        log.error("refusal entries not written to the audit log (%d): the catalogue's writer lock was still held "
                  "%.1f s after the server began to stop; the WARNING lines above give their reasons: %s",
                  len(left), SETTLE_S, "; ".join(f"{event} {subject} by {by}" for _, event, subject, _, by in left))


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
    if exc.code in NOT_REFUSALS or exc.refuses_nobody:
        # an outage of the catalogue or the object store is the administrator's to see, with its detail;
        # the archive's own back-off (every upload slot taken) is a turn to wait, not a refusal
        (log.warning if exc.code == grpc.StatusCode.UNAVAILABLE else log.info)("%s: %s", method, exc)
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
