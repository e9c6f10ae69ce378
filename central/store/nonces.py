"""Signed calls' nonces: a call captured before a restart, or sent to another archive process, cannot be
replayed. On the embedded default they live in an SQLite file of their own beside the catalogue (a nonce
written per call would otherwise queue behind the catalogue's writer); when the catalogue is PostgreSQL,
in its ``call_nonces`` table, which every ``serve`` process on that database shares."""

import sqlite3
import threading
import time
from pathlib import Path

from quire import callauth
from quire.db import atomic, one, open_db


NONCE_MIGRATIONS = [
    ("0001_nonces", [
        "CREATE TABLE nonces (station_id TEXT NOT NULL, nonce TEXT NOT NULL, time_ms INTEGER NOT NULL,"
        " PRIMARY KEY (station_id, nonce))",
        "CREATE INDEX nonces_time ON nonces (time_ms)",
    ]),
]


class NonceCache:
    """Nonces of calls still inside the clock-skew window, kept in their own SQLite file so that a
    call captured before a restart cannot be replayed after it; a nonce seen twice is a replay."""

    def __init__(self, path: Path, window_ms: int = 2 * callauth.MAX_CLOCK_SKEW_MS, prune_every_s: float = 30.0):
        self.window_ms, self.prune_every_s = window_ms, prune_every_s
        self.db = open_db(path, NONCE_MIGRATIONS)
        self._lock = threading.Lock()
        self._pruned_at = -float("inf")

    def first_use(self, station_id: str, nonce: str, time_ms: int, now_ms: int) -> int | None:
        """Record a call's nonce; None when it is new, else the call time it was first seen with."""
        with self._lock:
            if time.monotonic() - self._pruned_at > self.prune_every_s:
                # Calls older than the skew are refused by their time anyway; twice the skew leaves a
                # margin for the archive's clock being stepped back.
                with atomic(self.db):
                    self.db.execute("DELETE FROM nonces WHERE time_ms < :before", {"before": now_ms - self.window_ms})
                self._pruned_at = time.monotonic()
            try:
                with atomic(self.db):
                    self.db.execute("INSERT INTO nonces (station_id, nonce, time_ms) VALUES (:station, :nonce, :time)",
                                    {"station": station_id, "nonce": nonce, "time": time_ms})
            except sqlite3.IntegrityError:
                row = one(self.db, "SELECT time_ms FROM nonces WHERE station_id = :station AND nonce = :nonce",
                          {"station": station_id, "nonce": nonce})
                return row["time_ms"] if row else time_ms
            return None

    def close(self) -> None:
        self.db.close()


class SharedNonces:
    """The same guard in the PostgreSQL catalogue's ``call_nonces`` table, under ``guard`` (which calls:
    stations', the primary's to a copy): a nonce used on any process is a replay on every other. Each
    insert is its own short transaction outside the archive's writer lock (``unlocked``)."""

    def __init__(self, catalogue, guard: str, window_ms: int = 2 * callauth.MAX_CLOCK_SKEW_MS,
                 prune_every_s: float = 30.0):
        self.catalogue, self.guard = catalogue, guard
        self.window_ms, self.prune_every_s = window_ms, prune_every_s
        self._lock = threading.Lock()
        self._pruned_at = -float("inf")

    def first_use(self, station_id: str, nonce: str, time_ms: int, now_ms: int) -> int | None:
        """Record a call's nonce; None when it is new, else the call time it was first seen with."""
        with self._lock:
            prune = time.monotonic() - self._pruned_at > self.prune_every_s
            if prune:
                self._pruned_at = time.monotonic()
        if prune:   # each process prunes now and then; past the window a call is refused by its time
            self.catalogue.unlocked("DELETE FROM call_nonces WHERE guard = :guard AND time_ms < :before",
                                    {"guard": self.guard, "before": now_ms - self.window_ms})
        key = {"guard": self.guard, "caller": station_id, "nonce": nonce, "time": time_ms}
        if self.catalogue.unlocked("INSERT INTO call_nonces (guard, caller, nonce, time_ms)"
                                   " VALUES (:guard, :caller, :nonce, :time) ON CONFLICT DO NOTHING RETURNING 1", key):
            return None
        row = self.catalogue.one("SELECT time_ms FROM call_nonces WHERE guard = :guard AND caller = :caller"
                                 " AND nonce = :nonce", key)
        return row["time_ms"] if row else time_ms

    def close(self) -> None:
        """Nothing of its own to close: the catalogue's connections are the archive's."""


def open_nonces(catalogue, home: Path, file_name: str, guard: str) -> "NonceCache | SharedNonces":
    """The replay guard for an archive process: shared through the catalogue when it is PostgreSQL,
    else the SQLite file ``file_name`` under the archive's ``home``."""
    if catalogue.kind == "postgresql":
        return SharedNonces(catalogue, guard)
    return NonceCache(home / file_name)
