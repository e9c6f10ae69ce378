"""Power cut at random points of a fast feed on a Pi's SD card: every page the operator saw stored is stored,
and the operator is told exactly which sheet to feed again.

The station's home is an ext4 file system on a loop device throttled to the Pi 5 SD budget of bench.station
(45 MB/s, 2,000 write IOPS) with that budget's CPU quota; ``quire-station scan`` runs in its own process
group, and the whole group is killed -9 at a random moment. A kill leaves the kernel's page cache, so the
unflushed spool survives it. For a power cut, the device is then held (its write limit set to one byte a
second, so nothing more reaches it) and copied as it is: what a card keeps when the power goes, the
flushed writes and whatever else the kernel had written by then. The copy is mounted (ext4 replays its
journal) and the station started on it in a mount namespace where the kernel's boot id is another.
"""

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench.station import BUDGETS, CpuQuota, LoopDisk
from station import config, home as station_home
from station.scan import default_workers, open_spool
from tests.conftest import cli_in_process, make_station
from tests.station.test_scan_spool import _kill_while_spooled
from tests.systemd.tools import missing

SHEETS = 12
BLKIO = Path("/sys/fs/cgroup/blkio")
ROUNDS = 3


@pytest.fixture
def sd_card(tmp_path):
    """A station home on the Pi 5 SD budget's throttled loop device, and the budget's CPU group."""
    if os.geteuid() != 0 or not (BLKIO / "blkio.throttle.write_bps_device").exists():
        missing("needs root and the cgroup v1 blkio controller (a throttled loop device)")
    budget = BUDGETS["pi5-sd"]
    disk = LoopDisk(tmp_path, budget, size_gb=2)
    try:
        quota = CpuQuota(budget.cores)
        try:
            yield disk, quota.path
        finally:
            for pid in (quota.path / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)   # a station a failed test left (stopped) in the group
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(pid), 0)
            quota.close()
    finally:
        disk.close()


def test_kill_minus_nine_at_random_points_loses_no_reported_page_and_names_the_sheet(sd_card):
    disk, cgroup = sd_card
    home = disk.mount / "st"
    make_station(home).close()
    (home / "station.toml").write_text("dpi = 150\n")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for round_ in range(ROUNDS):
        dossier = f"D-{round_:04d}"
        args = ("--home", home, "scan", "--dossier", dossier, "--material", "1-1", "--title", "干部履历表",
                "--source", f"synthetic:seed={round_},sheets={SHEETS}", "--json")
        delay = rng.uniform(0.0, 6.0)   # from the batch's start: before, between and after pages
        reported = _scan_killed(home, args, cgroup, delay)
        context = f"seed {seed}, round {round_}, killed after {delay:.2f} s, reported {reported}"

        station = station_home.open_station(config.load(home))
        try:
            batch = next(b for b in station.store.batches() if b["archive_no"] == dossier)
            stored = [p["n"] for p in station.store.pages(batch["id"])]
        finally:
            station.close()
        assert set(reported) <= set(stored), context          # every page the operator saw stored is stored
        if batch["state"] == "sealed":
            assert stored == list(range(1, 2 * SHEETS + 1)), context
            continue
        status = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)
        (held,) = [b for b in status["batches_open"] if b["archive_no"] == dossier]
        durable = held["pages"]
        assert durable % 2 == 0 and durable >= len(stored), context   # whole sheets, stored or spooled
        told = (f"feed again from sheet {durable // 2 + 1} (page {durable + 1}, its front)" if durable
                else "feed again from sheet 1 (page 1)")
        assert held["feed_again"] == told, context
        assert told in cli_in_process("quire-station", "--home", home, "status").stdout, context

        # The operator feeds that sheet and the rest: each page of the dossier once, in order.
        resumed = cli_in_process("quire-station", *args)
        assert f"{2 * SHEETS} pages" in resumed.stderr, context
        station = station_home.open_station(config.load(home))
        try:
            assert [p["n"] for p in station.store.pages(batch["id"])] == list(range(1, 2 * SHEETS + 1)), context
        finally:
            station.close()


def test_a_four_core_pi_processes_three_pages_at_once_and_keeps_a_core_for_the_scanner():
    """With no [pipeline] workers in station.toml: one per core peaked at 434-486 MB on the Pi budgets
    (bench.station), over the 400 MB a Pi station may use; one fewer leaves a core to capture and store."""
    assert {cores: default_workers(cores) for cores in (1, 2, 3, 4, 8)} == {1: 1, 2: 2, 3: 2, 4: 3, 8: 7}


def _until_batch_opened(db_path: Path, dossier: str, run: subprocess.Popen) -> None:
    """Wait until the scan has opened its batch (the CLI takes a while to start under the CPU quota)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM batches WHERE archive_no = ?", [dossier]).fetchone():
                return
        except sqlite3.OperationalError:
            pass                    # the station's tables are being migrated
        finally:
            conn.close()
        time.sleep(0.05)
    raise AssertionError(f"the scan of {dossier} never opened its batch")


def test_a_power_cut_at_random_points_loses_no_reported_page_and_names_the_sheet(sd_card, tmp_path):
    disk, cgroup = sd_card
    home = disk.mount / "st"
    make_station(home).close()
    (home / "station.toml").write_text("dpi = 150\n")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for round_ in range(2):
        dossier = f"P-{round_:04d}"
        args = ["--home", home, "scan", "--dossier", dossier, "--material", "1-1", "--title", "干部履历表",
                "--source", f"synthetic:seed={round_},sheets={SHEETS}", "--json"]
        delay = rng.uniform(0.5, 6.0)
        reported = _scan_killed(home, args, cgroup, delay)
        context = f"seed {seed}, round {round_}, power cut after {delay:.2f} s, reported {reported}"
        with _power_cut_copy(disk, tmp_path / f"cut-{round_}") as cut:
            args[1] = cut
            status = json.loads(_after_reboot(tmp_path, "--home", cut, "status", "--json").stdout)
            held = [b for b in status["batches_open"] if b["archive_no"] == dossier]
            station = station_home.open_station(config.load(cut))
            try:
                stored = [p["n"] for b in station.store.batches() if b["archive_no"] == dossier
                          for p in station.store.pages(b["id"])]
            finally:
                station.close()
            assert set(reported) <= set(stored), context        # every page the operator saw stored is stored
            assert stored == list(range(1, len(stored) + 1)) and len(stored) % 2 == 0, context  # whole sheets
            if len(stored) == 2 * SHEETS:
                continue
            assert held and held[0]["pages"] == len(stored), context   # the lost spool is not counted
            told = (f"feed again from sheet {len(stored) // 2 + 1} (page {len(stored) + 1}, its front)" if stored
                    else "feed again from sheet 1 (page 1)")
            assert held[0]["feed_again"] == told, context
            resumed = _after_reboot(tmp_path, *args)
            assert f"{2 * SHEETS} pages" in resumed.stderr, context
            station = station_home.open_station(config.load(cut))
            try:
                (batch,) = [b for b in station.store.batches() if b["archive_no"] == dossier]
                assert [p["n"] for p in station.store.pages(batch["id"])] == list(range(1, 2 * SHEETS + 1)), context
            finally:
                station.close()



def test_a_reboot_after_a_kill_drops_the_spool_and_says_which_pages_and_sheet(sd_card, tmp_path):
    """Pages spooled before a reboot are not trusted (their files were never flushed): the station drops
    them, counts only what is stored, and the batch says which pages were lost and which sheet comes next."""
    disk, cgroup = sd_card
    home = disk.mount / "st"
    st = make_station(home)
    open_spool(st).close()
    st.close()
    (home / "station.toml").write_text("dpi = 150\n[pipeline]\nworkers = 1\n")   # the spool fills up
    args = ["--home", home, "scan", "--dossier", "R-0001", "--material", "1-1", "--title", "干部履历表",
            "--source", f"synthetic:seed=5,sheets={SHEETS}", "--json"]
    run = subprocess.Popen([str(Path(sys.executable).parent / "quire-station"), *map(str, args)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())))
    durable = _kill_while_spooled(run, config.load(home).db_path)
    stored = sorted({n for n, kind in durable if kind == "page"})
    lost = sorted({n for n, kind in durable if kind == "spool"} - set(stored))
    assert stored == list(range(1, len(stored) + 1)) and len(stored) % 2 == 0, durable   # whole sheets

    (held,) = json.loads(_after_reboot(tmp_path, "--home", home, "status", "--json").stdout)["batches_open"]
    assert held["pages"] == len(stored) and held["pages_spooled"] == 0, held
    # Another batch scanned after the reboot drops the lost pages and says so on the interrupted one.
    _after_reboot(tmp_path, "--home", home, "scan", "--dossier", "R-0002", "--material", "1-1", "--title", "x",
                  "--source", "synthetic:seed=1,sheets=1")
    told = (f"the station lost power (or was reset) before pages {lost[0]}–{lost[-1]} were stored; "
            f"feed again from sheet {len(stored) // 2 + 1} (page {len(stored) + 1}, its front)")
    assert f"batch R-0001 1-1 interrupted: {len(stored)} pages — {told}" in cli_in_process(
        "quire-station", "--home", home, "status").stdout
    resumed = _after_reboot(tmp_path, *args)
    assert f"{2 * SHEETS} pages (resumed at page {len(stored) + 1})" in resumed.stderr

def _scan_killed(home: Path, args, cgroup: Path, delay: float) -> list[int]:
    """Run ``quire-station scan`` in its own process group and the budget's CPU group, kill -9 the group
    ``delay`` seconds after its batch opened; the pages it reported stored."""
    out = home.parent / f"killed-{time.monotonic_ns()}.out"
    dossier = args[args.index("--dossier") + 1]
    with open(out, "w") as fh:
        run = subprocess.Popen([str(Path(sys.executable).parent / "quire-station"), *map(str, args)],
                               stdout=fh, stderr=subprocess.DEVNULL, start_new_session=True,
                               preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())))
        _until_batch_opened(config.load(home).db_path, dossier, run)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)   # the whole station process tree, mid-feed
        run.wait(timeout=60)
    return [json.loads(line)["n"] for line in out.read_text().splitlines() if line.startswith("{")]


@contextlib.contextmanager
def _power_cut_copy(disk: LoopDisk, directory: Path):
    """The device as the power cut left it, mounted at ``directory``/mnt; the station home on it."""
    rule = BLKIO / "blkio.throttle.write_bps_device"
    directory.mkdir()
    image = directory / "cut.img"
    rule.write_text(f"{disk.majmin} 1")       # nothing more reaches the device
    try:
        subprocess.run(["cp", "--sparse=always", str(disk.image), str(image)], check=True)
    finally:
        rule.write_text(f"{disk.majmin} {BUDGETS['pi5-sd'].write_bps}")
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True,
                            check=True).stdout.strip()
    mount = directory / "mnt"
    mount.mkdir()
    try:
        subprocess.run(["mount", device, str(mount)], check=True)   # ext4 replays its journal
        try:
            yield mount / "st"
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
        image.unlink()


def _after_reboot(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    """quire-station as after a reboot: in a mount namespace where the kernel's boot id is another."""
    boot_id = tmp_path / "boot_id"
    boot_id.write_text(f"{uuid.uuid4()}\n")
    script = 'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(boot_id),
                           str(Path(sys.executable).parent / "quire-station"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc
