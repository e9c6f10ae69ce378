"""The disaster drill: two real archives on loopback, a station syncing into the primary while the copy
follows through kills and a cut link; then the primary's home is destroyed, the copy promoted with one
command, the station pointed at it, and verify and audit verify pass with every page it has a receipt for."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from station.enrol import enroll
from station.scan import scan
from station.sync import sync
from tests.conftest import TEST_PROFILE, cli_in_process, make_station, write_test_profile
from tests.netfaults import FaultyProxy

EXE = Path(sys.executable).parent / "quire-central"


def _serve(home: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(EXE), "--home", str(home), "serve", "--listen", f"127.0.0.1:{port}",
                             "--no-advertise"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, line.removeprefix("listening on ")


def _stop(proc: subprocess.Popen, how=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(how)
    proc.wait(timeout=30)
    proc.stdout.close()


def _replicate(home: Path, copy: str, *extra) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), "--home", str(home), "replicate", "--copy", copy, "--retry-s", "60", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _until(predicate, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _scan(st, *items, dossier="D-9"):
    for item in items:
        seed = sum(ord(c) * 7 ** i for i, c in enumerate(dossier + item)) % 100_000
        scan(st, {"archive_no": dossier, "name": "李四"}, {"item": item, "title": f"材料 {item}"},
             f"synthetic:seed={seed},sheets=2")


def _manifests(st, receipted: bool = False) -> list[dict]:
    """The station's sealed manifests in order (only those it holds a receipt for, if ``receipted``)."""
    rows = st.store.db.execute("SELECT manifest, receipt FROM bundles ORDER BY created_at").fetchall()
    return [json.loads(m) for m, receipt in rows if receipt or not receipted]


def _received(st) -> dict:
    """(archive_no, item, n) → sha256 of every page the station holds a receipt for."""
    return {(m["dossier"]["archive_no"], m["material"]["item"], p["n"]): p["sha256"]
            for m in _manifests(st, receipted=True) for p in m["pages"]}


def _catalogued(home: Path) -> dict:
    import sqlite3

    conn = sqlite3.connect(f"file:{home / 'central.db'}?mode=ro", uri=True)
    try:
        return {(a, i, n): sha for a, i, n, sha in conn.execute(
            "SELECT m.archive_no, m.item, p.n, p.sha256 FROM pages p JOIN materials m ON m.id = p.material_id")}
    finally:
        conn.close()


def test_disaster_drill(tmp_path):
    primary_home, copy_home, escrow = tmp_path / "primary", tmp_path / "copy", tmp_path / "escrow"
    write_test_profile(primary_home)
    primary_fp = re.search(r"key fingerprint (\S+)", cli_in_process("quire-central", "--home", primary_home, "init").stdout)[1]
    cli_in_process("quire-central", "--home", primary_home, "profiles", "default", TEST_PROFILE)
    # The primary's identity goes into escrow (offline, sealed) when the copy is set up.
    for part in ("keys", "tls"):
        shutil.copytree(primary_home / part, escrow / part)
    procs = {}
    proxy = None
    st = None
    try:
        procs["primary"], primary = _serve(primary_home)
        out = cli_in_process("quire-central", "--home", copy_home, "replica", "init", "--primary", primary,
                      "--pin", primary_fp).stdout
        copy_fp = re.search(r"this copy's key fingerprint (\S+)", out)[1]
        procs["copy"], copy = _serve(copy_home)
        copy_port = int(copy.rsplit(":", 1)[1])
        cli_in_process("quire-central", "--home", primary_home, "replica", "add", "--copy", copy, "--pin", copy_fp)
        assert cli_in_process("quire-central", "--home", primary_home, "replica", "status", check=False).returncode == 1

        st = make_station(tmp_path / "st", primary, station_id="st-drill", dpi=200, chunk_bytes=65536,
                          sync_timeout_s=10.0, backoff_base_s=0.05, backoff_max_s=0.2)
        cli_in_process("quire-central", "--home", primary_home, "stations", "add", "st-drill", "--key",
                st.public_key.hex(), "--unit", "u")
        enroll(st, primary)

        # 1. The station syncs into the primary while the copy follows; the copy is killed -9 mid-transfer.
        _scan(st, "1-1", "2-1", "3-1")
        syncing = subprocess.Popen([str(EXE.parent / "quire-station"), "--home", str(tmp_path / "st"), "sync"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _until(lambda: _catalogued(primary_home), "the first material at the primary")
        proxy = FaultyProxy(copy, rate_bytes_s=1_000_000)
        pushing = _replicate(primary_home, proxy.address)
        _until(lambda: proxy.upstream_bytes > 400_000 or pushing.poll() is not None, "bytes to the copy")
        assert pushing.poll() is None, pushing.stdout.read()
        _stop(procs["copy"], signal.SIGKILL)
        procs["copy"], _ = _serve(copy_home, copy_port)
        out, _ = pushing.communicate(timeout=120)
        assert pushing.returncode == 0, out
        assert syncing.wait(timeout=120) == 0, syncing.stdout.read()
        syncing.stdout.close()
        proxy.close()

        # 2. The primary's replication is killed -9 mid-transfer; the next run resumes, not restarts.
        _scan(st, "4-1-1", "5-1", "6-1")
        assert not sync(st, primary, sleep=lambda s: None).failed
        new_bytes = sum(p["bytes"] for m in _manifests(st)[-3:] for p in m["pages"])
        proxy = FaultyProxy(copy, rate_bytes_s=1_000_000)
        pushing = _replicate(primary_home, proxy.address)
        _until(lambda: proxy.upstream_bytes > new_bytes * 0.6 or pushing.poll() is not None, "most of the pages")
        assert pushing.poll() is None, pushing.stdout.read()
        os.kill(pushing.pid, signal.SIGKILL)
        pushing.wait()
        pushing.stdout.close()
        proxy.close()
        out = cli_in_process("quire-central", "--home", primary_home, "replicate", "--copy", copy).stdout
        sent = int(re.search(r"(\d+) bytes sent", out)[1])
        assert sent < new_bytes, f"{sent} bytes sent after the kill for {new_bytes} bytes of pages: it started over"

        # 3. A cut link: connections to the copy break at random points; the push retries and finishes.
        _scan(st, "7-1", "8-1")
        assert not sync(st, primary, sleep=lambda s: None).failed
        proxy = FaultyProxy(copy, cut_after=(100_000, 400_000), max_faults=3, seed=17)
        out = cli_in_process("quire-central", "--home", primary_home, "replicate", "--copy", proxy.address).stdout
        assert proxy.cuts >= 1 and int(re.search(r"(\d+) retries", out)[1]) >= 1, out
        proxy.close()
        status = cli_in_process("quire-central", "--home", primary_home, "replica", "status").stdout
        assert "0 audit entries, 0 bundles, 0 blobs behind" in status, status

        # 4. Disaster: the primary's disk is gone. The copy is promoted and the station pointed at it.
        received = _received(st)
        assert len(received) == 8 * 4
        _stop(procs.pop("primary"), signal.SIGKILL)
        shutil.rmtree(primary_home)
        _stop(procs.pop("copy"))
        out = cli_in_process("quire-central", "--home", copy_home, "promote", "--identity", escrow).stdout
        assert f"now the primary {primary_fp}" in out
        procs["copy"], promoted = _serve(copy_home)
        _scan(st, "9-1-1")
        report = sync(st, promoted, sleep=lambda s: None)
        assert len(report.committed) == 1 and not report.failed and not report.alarms, report
        received = _received(st)
        assert _catalogued(copy_home) == received and len(received) == 9 * 4
        verify = cli_in_process("quire-central", "--home", copy_home, "verify")
        assert verify.stdout.rstrip().endswith("OK"), verify.stdout
        audit = cli_in_process("quire-central", "--home", copy_home, "audit", "verify")
        assert audit.stdout.rstrip().endswith("OK"), audit.stdout
    finally:
        if proxy:
            proxy.close()
        for proc in procs.values():
            _stop(proc)
        if st:
            st.close()

