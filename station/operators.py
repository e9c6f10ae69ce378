"""Station-local operator accounts: a name and a PIN the technician sets, argon2id-hashed, locked
after repeated wrong PINs. The signed-in name is what a batch and its manifest record."""

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from quire.db import atomic, one, open_db, rows, utcnow

from .errors import UsageError

MIGRATIONS = [
    ("0001_operators", [
        """CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            pin_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            pin_set_at TEXT NOT NULL,
            disabled_at TEXT)""",
        # Failures per name tried (known or not, so a guesser learns nothing from being locked).
        """CREATE TABLE pin_failures (
            name TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            last_at TEXT NOT NULL,
            locked_until TEXT)""",
    ]),
]

FREE_FAILURES = 5        # wrong PINs a name may have before it is locked
FIRST_LOCK_S = 60        # each further wrong PIN doubles the lock, up to an hour
MAX_LOCK_S = 60 * 60
PIN = re.compile(r"[0-9]{6,12}")
NAME_CHARS = 32
_HASHER = PasswordHasher()   # argon2id with the library's recommended cost
_DUMMY = _HASHER.hash("000000")  # verified against for unknown names: the same time as a known one


def db_path(home: Path) -> Path:
    return home / "operators.db"


@dataclass(frozen=True)
class SignIn:
    """The operator's name when the PIN was right, else why not (for the person at the screen)."""

    name: str | None = None
    message: str = ""
    locked: bool = False


class Operators:
    """The station's operator accounts, in their own SQLite file in the station home."""

    def __init__(self, home: Path):
        path = db_path(home)
        old = os.umask(0o077)   # PIN hashes: readable by the station's user alone
        try:
            self.db = open_db(path, MIGRATIONS)
        finally:
            os.umask(old)
        if os.geteuid() == 0:
            # The technician runs 'operator add' as root; the service (the home's owner) counts wrong PINs.
            owner = home.stat()
            for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if part.exists():
                    os.chown(part, owner.st_uid, owner.st_gid)

    def close(self) -> None:
        self.db.close()

    def add(self, name: str, pin: str, reset: bool = False) -> bool:
        """Create an operator (or, with ``reset``, set a new PIN and enable them again); True when new."""
        name = check_name(name)
        check_pin(pin)
        now = utcnow()
        with atomic(self.db):
            known = one(self.db, "SELECT name FROM operators WHERE name = ?", [name])
            if known and not reset:
                raise UsageError(f"operator {name!r} already exists; to give them a new PIN (and enable them "
                                 f"again), run 'quire-station operator add {name} --reset'")
            pin_hash = _HASHER.hash(pin)
            if known:
                self.db.execute("UPDATE operators SET pin_hash = ?, pin_set_at = ?, disabled_at = NULL"
                                " WHERE name = ?", [pin_hash, now, name])
            else:
                self.db.execute("INSERT INTO operators VALUES (?, ?, ?, ?, NULL)", [name, pin_hash, now, now])
            self.db.execute("DELETE FROM pin_failures WHERE name = ?", [name])
        return not known

    def disable(self, name: str) -> None:
        """Stop an operator signing in; their open kiosk sessions end at their next request."""
        with atomic(self.db):
            if one(self.db, "SELECT name FROM operators WHERE name = ?", [name]) is None:
                raise UsageError(f"no operator {name!r}; 'quire-station operator ls' lists them")
            self.db.execute("UPDATE operators SET disabled_at = COALESCE(disabled_at, ?) WHERE name = ?",
                            [utcnow(), name])

    def list(self) -> list[dict]:
        """Every operator: name, created, PIN set, disabled, wrong PINs in a row, locked until."""
        return rows(self.db, "SELECT o.name, o.created_at, o.pin_set_at, o.disabled_at,"
                    " COALESCE(f.failures, 0) AS failures, f.locked_until FROM operators o"
                    " LEFT JOIN pin_failures f ON f.name = o.name ORDER BY o.name")

    def enabled(self, name: str) -> bool:
        return one(self.db, "SELECT 1 AS ok FROM operators WHERE name = ? AND disabled_at IS NULL", [name]) is not None

    def sign_in(self, name: str, pin: str) -> SignIn:
        """Check the PIN unless the name is locked; lock it after FREE_FAILURES wrong PINs in a row."""
        name = name.strip()[:NAME_CHARS]
        now = datetime.now(timezone.utc)
        failed = one(self.db, "SELECT * FROM pin_failures WHERE name = ?", [name])
        if failed and failed["locked_until"] and failed["locked_until"] > _stamp(now):
            return SignIn(message=_locked_message(failed["locked_until"]), locked=True)
        row = one(self.db, "SELECT pin_hash, disabled_at FROM operators WHERE name = ?", [name])
        try:
            ok = _HASHER.verify(row["pin_hash"] if row else _DUMMY, pin) and row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if ok and row["disabled_at"]:
            return SignIn(message="该操作员账号已停用，请联系技术人员。")
        if ok:
            with atomic(self.db):
                self.db.execute("DELETE FROM pin_failures WHERE name = ?", [name])
            return SignIn(name=name)
        failures = (failed["failures"] if failed else 0) + 1
        until = None
        if failures >= FREE_FAILURES:
            until = _stamp(now + timedelta(seconds=min(MAX_LOCK_S, FIRST_LOCK_S * 2 ** (failures - FREE_FAILURES))))
        with atomic(self.db):
            self.db.execute("INSERT OR REPLACE INTO pin_failures VALUES (?, ?, ?, ?)",
                            [name, failures, utcnow(), until])
        if until:
            return SignIn(message=_locked_message(until), locked=True)
        left = FREE_FAILURES - failures
        return SignIn(message=f"姓名或 PIN 不正确（再错 {left} 次将暂时锁定）。")


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_CHARS or any(c.isspace() or not c.isprintable() for c in name):
        raise UsageError(f"operator name {name!r}: give 1–{NAME_CHARS} characters without spaces, e.g. 张三")
    return name


def check_pin(pin: str) -> None:
    if not PIN.fullmatch(pin):
        raise UsageError("a PIN is 6 to 12 digits; choose another")


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _locked_message(until: str) -> str:
    local = datetime.fromisoformat(until.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    return f"PIN 多次输入错误，该账号已暂时锁定，请于 {local} 之后再试；如需立即解锁，请技术人员重设 PIN。"
