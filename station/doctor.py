"""`quire-station doctor`: check what a technician would check, say OK / WARN / FAIL and the fix.

Every check reads only: the store is opened read-only (never creating SQLite side files that the
service's user could not write afterwards when doctor runs as root), and the scanner is asked
through the running service when there is one, since the service owns it.
"""

import ctypes
import ctypes.util
import os
import pwd
import shutil
import sqlite3
import stat
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from quire import keys

from . import profiles
from .errors import NeedsTechnician, StationError
from .home import owner, private
from .store import SUFFIX

DISK_FAIL_BYTES = 1 << 30        # below this a long batch may not fit
DISK_WARN_BYTES = 5 << 30
CLOCK_FLOOR = datetime(2024, 1, 1, tzinfo=timezone.utc)   # a Pi without RTC boots in the past
_TIME_ERROR = 5                  # adjtimex(2): the kernel clock is not synchronised


@dataclass
class Check:
    name: str
    level: str                   # OK, WARN or FAIL
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.level:<4} {self.name:<9} {self.message}"
        return text + (f"\n{'':15}fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict:
        return asdict(self)


def run_checks(config, zeroconf_timeout_s: float = 3.0, disk_fail_bytes: int = DISK_FAIL_BYTES,
               disk_warn_bytes: int = DISK_WARN_BYTES) -> list[Check]:
    """Run every check; one that breaks unexpectedly becomes a FAIL naming the error, never a crash."""
    service = service_status(config)
    checks = [
        ("service", lambda: check_service(service)),
        ("scanner", lambda: check_scanner(config, service)),
        ("key", lambda: check_key(config)),
        ("store", lambda: check_store(config)),
        ("disk", lambda: check_disk(config.home, disk_fail_bytes, disk_warn_bytes)),
        ("clock", lambda: check_clock(config)),
        ("central", lambda: check_central(config)),
        ("zeroconf", lambda: check_zeroconf(config, zeroconf_timeout_s)),
    ]
    results = []
    for name, run in checks:
        try:
            with private(config):
                results.append(run())
        except NeedsTechnician as exc:
            user = pwd.getpwuid(os.geteuid()).pw_name
            results.append(Check(name, "WARN", f"not checked: {user} may not read the station's key and store "
                                 f"(only {exc.owner} and root may)", "run doctor as root: sudo quire-station doctor"))
        except Exception as exc:  # a doctor reports what it could not check
            results.append(Check(name, "FAIL", f"could not check: {type(exc).__name__}: {exc}"))
    return results


def service_status(config) -> dict | StationError | None:
    """The running service's own report, None when it is not running, or why it would not answer."""
    from .control import connect, request

    try:
        sock = connect(config.control_socket_path)
        return request(sock, {"op": "status"}) if sock is not None else None
    except StationError as exc:
        return exc


def check_service(service) -> Check:
    if isinstance(service, StationError):
        return Check("service", "WARN", f"station service did not answer: {service}",
                     "run doctor as root or as a member of the station's control group")
    if service is None:
        return Check("service", "WARN", "station service is not running",
                     "sudo systemctl start quire-station; 'journalctl -u quire-station -e' shows why it stopped")
    return Check("service", "OK", f"running (pid {service['pid']}): {service['status']}")


def check_scanner(config, service) -> Check:
    kind = config.source.partition(":")[0]
    if kind == "synthetic":
        return Check("scanner", "WARN", "capture source is 'synthetic' (generated demo pages, no scanner)",
                     'set source = "sane:auto" in /etc/quire/station.toml and restart quire-station')
    if kind != "sane":
        return Check("scanner", "OK", f"capture source {config.source} (no scanner needed)")
    profile_list = profiles.load(config.profiles_dir)
    if isinstance(service, dict):
        info = service["scanner"]
        if info["problem"] or not info["device"]:
            return Check("scanner", "FAIL", f"the station service has no scanner: {info['problem']}",
                         _NO_SCANNER_FIX)
        profile = next((p for p in profile_list if p.name == info["profile"]), profiles.select("", "", profile_list))
        return _scanner_found(info["device"], info["vendor"], info["model"], profile, info["scan_button"],
                              info["feed"])
    from .capture.sane_source import devices

    wanted = config.source.partition(":")[2]
    found = profiles.find_device(devices(), wanted, profile_list)
    if found is None:
        return Check("scanner", "FAIL", f"SANE sees no scanner{'' if wanted == 'auto' else ' ' + wanted}",
                     _NO_SCANNER_FIX)
    (device, vendor, model, _), profile = found
    plan_button = next(iter(profile.buttons.get("scan", [])), None)
    return _scanner_found(device, vendor, model, profile, plan_button, None)


_NO_SCANNER_FIX = ("switch the scanner on and check its USB cable; 'sudo -u quire scanimage -L' must list it — "
                   "if only root sees it, install hardware/70-quire-scanners.rules to /etc/udev/rules.d, run "
                   "'sudo udevadm trigger' and replug it")


def _scanner_found(device, vendor, model, profile, button, feed) -> Check:
    what = f"{device} ({vendor} {model})"
    if profile.generic:
        return Check("scanner", "WARN", f"{what}: no Quire profile for this model; generic SANE names are guessed",
                     "copy the closest file in hardware/profiles to the profiles_dir of station.toml, adapt it "
                     "to 'scanimage -A' of this scanner and add its vendor and model under [match]")
    detail = f"profile {profile.name} ({profile.family})" + (f", feed {feed}" if feed else "")
    if not button:
        return Check("scanner", "OK", f"{what}: {detail}; no Scan-button sensor on this family, "
                     "so batches start with 'quire-station scan'")
    return Check("scanner", "OK", f"{what}: {detail}, Scan button '{button}'")


def check_key(config) -> Check:
    path = config.key_path
    if not path.exists():
        return Check("key", "FAIL", f"no station key at {path}", "run 'quire-station init' (as the quire user)")
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check("key", "FAIL", f"key file {path} is readable by others (mode {mode:04o})",
                     f"chmod 600 {path}; the key signs every bundle, treat a copy as a compromise")
    owner = config.home.stat().st_uid
    if st.st_uid != owner:
        return Check("key", "FAIL", f"key file {path} is owned by uid {st.st_uid}, the station home by uid {owner}",
                     f"chown --reference={config.home} {path}")
    dir_mode = stat.S_IMODE(path.parent.stat().st_mode)
    if dir_mode & 0o022:
        return Check("key", "WARN", f"key directory {path.parent} is writable by others (mode {dir_mode:04o})",
                     f"chmod 700 {path.parent}")
    try:
        key = keys.load_key_file(path)
    except keys.ContractError as exc:
        return Check("key", "FAIL", str(exc), "restore the key file from backup")
    except PermissionError:
        return Check("key", "OK", f"{path} is private (mode {mode:04o}); run doctor as root to check its content")
    return Check("key", "OK", f"{path} is private (mode {mode:04o}), key fingerprint "
                 f"{keys.fingerprint(bytes(key.verify_key))}")


def _open_store(config) -> sqlite3.Connection:
    path = config.db_path
    if not os.access(path, os.R_OK):   # SQLite would only say "unable to open database file"
        raise NeedsTechnician(config.home, owner(config))
    if Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists():
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # Without the side files mode=ro would create them (as whoever runs doctor); immutable reads as is.
    return sqlite3.connect(f"file:{path}?immutable=1", uri=True)


def check_store(config) -> Check:
    if not config.db_path.exists():
        return Check("store", "FAIL", f"no page store at {config.db_path}", "run 'quire-station init'")
    restore = ("stop quire-station, keep a copy of station.db and pages/, and restore them from backup; "
               "'sqlite3 station.db .recover' salvages what it can")
    try:
        with closing(_open_store(config)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                return Check("store", "FAIL", f"{config.db_path} is damaged: {'; '.join(problems[:3])}", restore)
            pages = db.execute(
                "SELECT p.sha256, p.media_type FROM pages p JOIN batches t ON t.id = p.batch_id"
                " LEFT JOIN bundles b ON b.batch_id = t.id WHERE b.state IS NULL OR b.state != 'purged'").fetchall()
    except sqlite3.DatabaseError as exc:
        return Check("store", "FAIL", f"{config.db_path} cannot be read: {exc}", restore)
    missing = [sha for sha, media in pages
               if not (config.pages_dir / sha[:2] / (sha + SUFFIX.get(media, ""))).exists()]
    if missing:
        return Check("store", "FAIL", f"{len(missing)} of {len(pages)} page files are missing (e.g. {missing[0][:16]}…)",
                     restore)
    return Check("store", "OK", f"{config.db_path} passes SQLite's integrity check; all {len(pages)} page files present")


def check_disk(home: Path, fail_below: int = DISK_FAIL_BYTES, warn_below: int = DISK_WARN_BYTES) -> Check:
    free = shutil.disk_usage(home if home.exists() else home.parent).free
    text = f"{free / (1 << 30):.1f} GiB free for {home}"
    fix = "run 'quire-station purge' to delete pages the archive has receipted, or free space on that disk"
    if free < fail_below:
        return Check("disk", "FAIL", text, fix)
    if free < warn_below:
        return Check("disk", "WARN", text, fix)
    return Check("disk", "OK", text)


def check_clock(config, now: datetime | None = None) -> Check:
    now = now or datetime.now(timezone.utc)
    fix = "set the time (sudo timedatectl set-time 'YYYY-MM-DD HH:MM:SS') and keep it set: sudo timedatectl set-ntp true"
    if now < CLOCK_FLOOR:
        return Check("clock", "FAIL", f"the clock says {now:%Y-%m-%d %H:%M}, which is in the past", fix)
    latest = None
    if config.db_path.exists():
        with closing(_open_store(config)) as db:
            latest = db.execute("SELECT MAX(t) FROM (SELECT MAX(captured_at) AS t FROM pages"
                                " UNION ALL SELECT MAX(created_at) FROM bundles)").fetchone()[0]
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if latest and stamp < latest:
        return Check("clock", "FAIL", f"the clock ({stamp}) is behind the last page stored ({latest}); new pages "
                     "would be dated before older ones", fix)
    if not _ntp_synchronised():
        return Check("clock", "WARN", f"{stamp}, but the kernel says the clock is not synchronised",
                     "sudo timedatectl set-ntp true (systemd-timesyncd), or point it at the archive's time server")
    return Check("clock", "OK", f"{stamp}, synchronised")


def _ntp_synchronised() -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes 0 only reads the state
    return libc.adjtimex(timex) not in (-1, _TIME_ERROR)


def _meta(config) -> dict:
    with closing(_open_store(config)) as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())


def check_central(config) -> Check:
    import grpc

    from quire.v1 import sync_pb2, sync_pb2_grpc

    from .errors import CentralKeyMismatch
    from .transport import endpoints, entries, explain_unavailable, open_channel

    if not config.db_path.exists():
        return Check("central", "FAIL", "no station yet", "run 'quire-station init', then 'quire-station enroll'")
    meta = _meta(config)
    address = config.central or meta.get("central_address")
    enrol = "quire-station enroll --central HOST:PORT, then have the archive operator approve the pairing code"
    if not address:
        return Check("central", "WARN", "no central archive configured or enrolled", enrol)
    if not meta.get("central_key"):
        return Check("central", "WARN", f"central archive {address} known, but no key pinned (not enrolled)", enrol)
    pinned = bytes.fromhex(meta["central_key"])
    meta_store = SimpleNamespace(get_meta=meta.get)
    station = SimpleNamespace(config=config, store=meta_store, station_id=meta.get("station_id", ""),
                              key=keys.load_key_file(config.key_path))
    # Each archive process on its own: a station spreads over those that answer and skips the others
    # silently, so this is where one that is down, or presents another identity, shows.
    answered, silent = [], []
    for target in endpoints(address) or entries(address):
        try:
            with open_channel(station, target) as channel:
                info = sync_pb2_grpc.StationSyncStub(channel).GetInfo(sync_pb2.GetInfoRequest(),
                                                                      timeout=min(config.sync_timeout_s, 10))
        except StationError as exc:
            return Check("central", "WARN", str(exc), enrol)
        except grpc.RpcError as exc:
            err = (explain_unavailable(station, target, exc) if exc.code() == grpc.StatusCode.UNAVAILABLE
                   else StationError(f"{target}: {exc.code().name}: {exc.details()}"))
            if isinstance(err, CentralKeyMismatch):
                return Check("central", "FAIL", str(err), "do not sync; ask the archive whether it re-keyed, and "
                             "re-enrol only after comparing the pairing code")
            silent.append(str(err))
            continue
        if info.public_key != pinned:
            return Check("central", "FAIL", f"{target} presents key {keys.fingerprint(info.public_key)}, but this "
                         f"station pinned {keys.fingerprint(pinned)}; nothing will be sent",
                         "ask the archive whether it re-keyed; re-enrol only after comparing the pairing code")
        answered.append(target)
    if not answered:
        return Check("central", "WARN", "; ".join(silent) or f"{address} does not resolve",
                     "bundles wait in the outbox; check the network and firewall to "
                     f"{address}, and 'systemctl status quire-central' on the archive")
    said = f"{', '.join(answered)} {'answers' if len(answered) == 1 else 'answer'} with the pinned key " \
           f"{keys.fingerprint(pinned)}"
    if silent:
        return Check("central", "WARN", f"{said}; but {'; '.join(silent)}",
                     "syncing goes on through the processes that answer; restart the others "
                     "('systemctl status quire-central' on their machines) or take them out of 'central'")
    return Check("central", "OK", said)


def check_zeroconf(config, timeout_s: float = 3.0) -> Check:
    from quire import discovery

    pinned_fp = None
    if config.db_path.exists():
        pinned = _meta(config).get("central_key")
        pinned_fp = keys.fingerprint(bytes.fromhex(pinned)) if pinned else None
    try:
        zc = discovery.open_zeroconf(config.zeroconf_interfaces)
    except Exception as exc:
        return Check("zeroconf", "FAIL", f"zeroconf cannot start ({exc})",
                     "check that the network is up and zeroconf_interfaces in station.toml names this machine's addresses")
    try:
        want = (lambda p: p.get("fp") == pinned_fp) if pinned_fp else (lambda p: True)
        found = discovery.browse(zc, discovery.CENTRAL_TYPE, timeout_s, want)
    finally:
        zc.close()
    if found:
        where = f"{found[0]['address']}:{found[0]['port']}"
        pinned_text = "with the pinned key" if pinned_fp else "(not enrolled yet)"
        return Check("zeroconf", "OK", f"central archive advertised at {where} {pinned_text}")
    if pinned_fp:
        return Check("zeroconf", "WARN", f"no central archive with the pinned key answered within {timeout_s:g} s",
                     "fine when 'central' is set in station.toml (multicast may not pass this network); otherwise "
                     "allow UDP 5353 between station and archive")
    return Check("zeroconf", "WARN", f"no central archive answered within {timeout_s:g} s",
                 "set central = \"HOST:PORT\" in station.toml, or allow UDP 5353 between station and archive")
