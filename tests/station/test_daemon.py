"""The station daemon as systemd runs it: a real `quire-station daemon` process, its sd_notify
messages read from a NOTIFY_SOCKET the test owns, the CLI talking to it over its control socket."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from station.jobs import JobQueue
from tests.conftest import make_station, read_frozen, run_cli
from tests.station.test_notify import NotifyListener, status_has

QUIRE_STATION = Path(sys.executable).parent / "quire-station"


@pytest.fixture
def listener():
    lst = NotifyListener()
    yield lst
    lst.close()


def make_home(tmp_path: Path, **settings) -> Path:
    """An initialised station whose station.toml holds ``settings``."""
    home = tmp_path / "st"
    make_station(home).close()
    lines = [f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}" for key, value in settings.items()]
    (home / "station.toml").write_text("\n".join(lines).replace("'", '"') + "\n")
    return home


class Daemon:
    """`quire-station daemon` as a child process, with systemd's environment."""

    def __init__(self, home: Path, listener: NotifyListener, watchdog_usec: int | None = None,
                 wrapper: tuple[str, ...] = ()):
        env = {**os.environ, "NOTIFY_SOCKET": listener.path}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log_path = home.parent / "daemon.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*wrapper, str(QUIRE_STATION), "--home", str(home), "daemon"], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def daemons():
    started = []
    yield lambda *args, **kw: started.append(Daemon(*args, **kw)) or started[-1]
    for daemon in started:
        daemon.close()


def test_ready_status_lines_watchdog_while_scanning_and_stopping(tmp_path, listener, daemons):
    home = make_home(tmp_path, source="synthetic:sheets=2", dpi=50)
    daemon = daemons(home, listener, watchdog_usec=1000)  # a ping due at every step of the loop
    first = listener.next(60)
    assert first is not None and first.get("READY") == "1", daemon.output()
    assert first["STATUS"] == "idle, queue empty · outbox 0 bundles · central not contacted yet"
    # Ready means usable: the store is open and the control socket answers.
    assert (home / "control.sock").exists()

    proc = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0042", "--material", "4-1-2",
                   "--title", "学历证明")
    assert [line.split()[:2] for line in proc.stdout.splitlines()] == [["page", str(n)] for n in range(1, 5)]
    assert "D-0042 4-1-2: 4 pages, sealed as bundle" in proc.stderr

    messages = listener.until(status_has("sealed D-0042 4-1-2"))
    statuses = [m["STATUS"] for m in messages if "STATUS" in m]
    for n in range(1, 5):
        assert f"scanning D-0042 4-1-2 page {n} · outbox 0 bundles · central not configured" in statuses
    assert statuses[-1] == "idle, queue empty; sealed D-0042 4-1-2 (4 pages) · outbox 1 bundle · central not configured"
    # The main loop kept the watchdog fed while it scanned: a ping before each page was requested.
    batch = messages[next(i for i, m in enumerate(messages) if "scanning D-0042" in m.get("STATUS", "")):]
    assert sum(m.get("WATCHDOG") == "1" for m in batch) >= 4, batch

    assert daemon.terminate() == 0
    stopping = listener.until(lambda m: m.get("STOPPING") == "1")[-1]
    assert stopping["STATUS"] == "stopping: shutting down"
    assert not (home / "control.sock").exists()
    # What systemctl status keeps showing once the process is gone.
    last = listener.until(lambda m: m.get("STATUS", "").startswith("stopped"))[-1]
    assert last["STATUS"] == "stopped · outbox 1 bundle · sync stopped"


def test_sigterm_mid_batch_keeps_every_captured_page(tmp_path, listener, daemons):
    # A feeder that would not run dry for hours: the stop can only come from SIGTERM.
    home = make_home(tmp_path, source="synthetic:sheets=100000", dpi=50)
    daemon = daemons(home, listener)
    listener.until(lambda m: m.get("READY") == "1")
    run_cli("quire-station", "--home", home, "queue", "add", "--dossier", "D-0042", "--material", "4-1-2",
            "--title", "学历证明", "--operator", "张三")
    dup = run_cli("quire-station", "--home", home, "queue", "add", "--dossier", "D-0042", "--material", "4-1-2",
                  "--title", "again", check=False)
    assert dup.returncode == 2 and "already queued (position 1)" in dup.stderr
    assert "1. D-0042 4-1-2 «学历证明» by 张三" in run_cli("quire-station", "--home", home, "queue", "ls").stdout

    with open(tmp_path / "scan.out", "w") as out:
        scan = subprocess.Popen([str(QUIRE_STATION), "--home", str(home), "scan"], stdout=out,
                                stderr=subprocess.PIPE, text=True)
        try:
            seen = listener.until(status_has("page 5"))
            daemon.proc.send_signal(signal.SIGTERM)
            err = scan.communicate(timeout=120)[1]
        finally:
            if scan.poll() is None:
                scan.kill()
    assert daemon.proc.wait(timeout=60) == 0, daemon.output()
    assert any(m.get("STOPPING") == "1" for m in listener.until(lambda m: m.get("STOPPING") == "1"))
    assert scan.returncode == 3
    assert "scanning stopped because the station service is stopping" in err and "resume" in err

    reported = max(int(m["STATUS"].split(" page ")[1].split()[0]) for m in seen if " page " in m.get("STATUS", ""))
    station = make_station(home)
    try:
        (batch,) = station.store.batches()
        pages = station.store.pages(batch["id"])
        assert batch["state"] == "interrupted" and "stopping" in batch["last_error"]
        assert [p["n"] for p in pages] == list(range(1, len(pages) + 1))
        assert len(pages) >= reported          # every page the daemon reported is stored
        assert len(pages) % 2 == 0             # duplex: it stopped between sheets, not between sides
        for page in pages:
            assert station.store.page_path(page["sha256"], page["media_type"]).exists()
        assert f"pages 1–{len(pages)} are stored" in err
    finally:
        station.close()
    (job,) = JobQueue(home / "queue.json").jobs()
    assert job["material"]["item"] == "4-1-2" and "stopping" in job["last_error"]


def test_sigterm_while_libsane_reads_a_page_still_stops_cleanly(tmp_path, listener, daemons):
    # SANE's test backend resets signal handlers process-wide while it reads (sanei_thread), as
    # avision or pixma do; that is the driver process's affair now, but the daemon must still finish
    # the sheet in hand and stop cleanly when SIGTERM lands while the driver reads a page.
    home = make_home(tmp_path, source="sane:test:0", dpi=50)
    with open(home / "station.toml", "a") as fh:
        fh.write("[sane_options]\nread_delay = true\nread_delay_duration = 50000\n")   # ~0.4 s a page
    daemon = daemons(home, listener)
    listener.until(lambda m: m.get("READY") == "1")
    scan = subprocess.Popen([str(QUIRE_STATION), "--home", str(home), "scan", "--dossier", "D-7", "--material",
                             "1-1", "--title", "履历表"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        listener.until(status_has("scanning D-7 1-1 page 2"))
        daemon.proc.send_signal(signal.SIGTERM)
        err = scan.communicate(timeout=120)[1]
    finally:
        if scan.poll() is None:
            scan.kill()
    assert daemon.proc.wait(timeout=60) == 0, daemon.output()
    assert "scanning stopped because the station service is stopping" in err
    station = make_station(home)
    try:
        (batch,) = station.store.batches()
        assert batch["state"] == "interrupted" and 2 <= batch["pages"] < 10
    finally:
        station.close()


def test_a_cli_that_goes_away_mid_batch_neither_stops_the_batch_nor_kills_the_service(tmp_path, listener, daemons):
    # Through libsane (in the driver process, whose reader threads reset SIGPIPE there): a write to the
    # vanished CLI must not kill the daemon.
    home = make_home(tmp_path, source="sane:test:0", dpi=50)
    daemon = daemons(home, listener)
    listener.until(lambda m: m.get("READY") == "1")
    scan = subprocess.Popen([str(QUIRE_STATION), "--home", str(home), "scan", "--dossier", "D-1", "--material",
                             "1-1", "--title", "履历表"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.until(status_has("scanning D-1 1-1 page 2"))
    scan.kill()                      # the operator's terminal closed
    scan.wait()
    listener.until(status_has("sealed D-1 1-1 (10 pages)"))
    assert daemon.proc.poll() is None, daemon.output()
    assert "no batches queued" in run_cli("quire-station", "--home", home, "queue", "ls").stdout
    assert daemon.terminate() == 0


def test_a_station_that_is_not_initialised_fails_without_ready(tmp_path, listener, daemons):
    home = tmp_path / "empty"
    home.mkdir()
    daemon = daemons(home, listener)
    assert daemon.proc.wait(timeout=60) == 78        # EX_CONFIG: the unit does not restart it
    assert "run 'quire-station init'" in daemon.output()
    messages = listener.until(lambda m: "STATUS" in m)
    assert not any("READY" in m for m in messages)
    assert messages[-1]["STATUS"].startswith("failed: no station at")


def test_cli_says_when_the_service_is_not_running(tmp_path):
    home = make_home(tmp_path)
    proc = run_cli("quire-station", "--home", home, "queue", "add", "--dossier", "D-1", "--material", "1-1",
                   "--title", "履历表", check=False)
    assert proc.returncode == 69 and "systemctl start quire-station" in proc.stderr
    proc = run_cli("quire-station", "--home", home, "scan", check=False)
    assert proc.returncode == 2 and "--dossier, --material and --title are required" in proc.stderr


def test_the_service_announces_itself_on_zeroconf_with_its_state_and_outbox(tmp_path, listener, daemons):
    from quire import discovery

    home = make_home(tmp_path, source="synthetic:sheets=1", dpi=50)
    with open(home / "station.toml", "a") as f:
        f.write('announce = true\nzeroconf_interfaces = ["127.0.0.1"]\n')
    daemon = daemons(home, listener)
    assert listener.next(60).get("READY") == "1", daemon.output()
    run_cli("quire-station", "--home", home, "scan", "--dossier", "D-7", "--material", "1-1", "--title", "履历")
    station_id = json.loads(run_cli("quire-station", "--home", home, "status", "--json").stdout)["station_id"]
    zc = discovery.open_zeroconf(["127.0.0.1"])
    try:
        found = discovery.browse(zc, discovery.STATION_TYPE, timeout_s=10,
                                 want=lambda p: p.get("id") == station_id and p.get("outbox") == "1")
        assert found, daemon.output()
        assert found[0]["properties"]["state"].startswith("idle")
    finally:
        zc.close()
    assert daemon.terminate() == 0


def test_a_station_booting_without_a_network_scans_and_announces_itself_later(tmp_path, listener, daemons):
    """Cable unplugged at boot: a network namespace of its own with no interface up (only root may make one)."""
    home = make_home(tmp_path, source="synthetic:sheets=1", dpi=50)
    with open(home / "station.toml", "a") as f:
        f.write("announce = true\n")
    daemon = daemons(home, listener, wrapper=("unshare", "--net"))
    assert listener.next(60).get("READY") == "1", daemon.output()
    out = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-8", "--material", "1-1", "--title", "履历")
    assert "page   2" in out.stdout
    assert daemon.terminate() == 0
    assert "not announced on zeroconf yet" in daemon.output() and "trying again in 60 s" in daemon.output()


def _spooled(home: Path) -> list:
    """Pages the station's spool table holds (captured, not yet stored), read from outside."""
    db = sqlite3.connect(f"file:{home / 'station.db'}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT batch_id, n FROM spool").fetchall()
    finally:
        db.close()


def test_after_kill_minus_nine_the_service_stores_spooled_pages_before_it_is_ready(tmp_path, listener, daemons):
    home = make_home(tmp_path, source="synthetic:sheets=100000", dpi=50)
    daemon = daemons(home, listener)
    listener.until(lambda m: m.get("READY") == "1")
    scan = subprocess.Popen([str(QUIRE_STATION), "--home", str(home), "scan", "--dossier", "D-9", "--material", "1-1",
                             "--title", "t"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listener.until(status_has("page 6"))
        # Freeze the service at a moment when pages wait in the spool, then cut the power.
        for _ in range(200):
            if read_frozen(daemon.proc, lambda: _spooled(home)):
                break
            daemon.proc.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        daemon.proc.kill()                      # no SIGTERM, nothing finished
        daemon.proc.wait(timeout=30)
        scan.wait(timeout=60)
    finally:
        if scan.poll() is None:
            scan.kill()
    spooled = _spooled(home)
    station = make_station(home)
    try:
        (batch,) = station.store.batches()
        stored = {p["n"] for p in station.store.pages(batch["id"])}
    finally:
        station.close()
    # A page is stored, then let go of by the spool: a kill in between leaves it in both, stored once.
    unstored = {n for _, n in spooled} - stored
    captured = len(stored | unstored)
    assert spooled and captured >= 6

    daemon = daemons(home, listener)
    ready = listener.until(lambda m: m.get("READY") == "1")[-1]
    assert not _spooled(home) and not list((home / "spool").glob("*.npy")), "the spool was not emptied before READY"
    station = make_station(home)
    try:
        pages = station.store.pages(batch["id"])
        assert [p["n"] for p in pages] == list(range(1, captured + 1))   # none lost, none twice
    finally:
        station.close()
    if unstored:
        assert f"recovered {len(unstored)} page(s)" in ready["STATUS"]
    assert daemon.terminate() == 0
