"""Signed calls' nonces, in a SQLite file of their own beside the catalogue: a call captured before a
restart cannot be replayed after it."""

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
