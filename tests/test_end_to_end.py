"""The whole path with real processes: central serve, station CLI, sync, verify, the demo."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture
def central_process(tmp_path):
    exe = Path(sys.executable).parent / "quire-central"
    proc = subprocess.Popen([str(exe), "--home", str(tmp_path / "central"), "serve", "--listen", "127.0.0.1:0",
                             "--zeroconf-interface", "127.0.0.1"], stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline().strip()
    assert re.fullmatch(r"listening on 127\.0\.0\.1:\d+", first), first
    fingerprint = proc.stdout.readline().strip().removeprefix("key fingerprint ")
    yield tmp_path / "central", first.removeprefix("listening on "), fingerprint
    proc.terminate()
    assert proc.wait(timeout=30) == 0  # SIGTERM is a clean stop


def test_cli_enrol_scan_sync_verify(tmp_path, central_process):
    central_home, address, fingerprint = central_process
    st = ["--home", tmp_path / "st"]
    (tmp_path / "st").mkdir()
    # zeroconf on loopback only: never announce or browse on the machine's real interfaces.
    (tmp_path / "st" / "station.toml").write_text('zeroconf_interfaces = ["127.0.0.1"]\n')
    run_cli("quire-station", *st, "init", "--id", "st-cli")
    # No address: found by zeroconf; the fingerprint picks ours if other archives answer too.
    asked = run_cli("quire-station", *st, "enroll", "--fingerprint", fingerprint, check=False)
    assert asked.returncode == 75, asked.stdout + asked.stderr
    assert f"found central archive at {address}" in asked.stdout
    code = re.search(r"pairing code (\d{4}-\d{4})", asked.stdout).group(1)
    assert code in run_cli("quire-central", "--home", central_home, "stations", "pending").stdout
    run_cli("quire-central", "--home", central_home, "stations", "approve", code, "--unit", "u1")
    assert "enrolled into unit u1" in run_cli("quire-station", *st, "enroll").stdout
    for item, seed in (("1-1", 1), ("9-2-1", 2)):
        run_cli("quire-station", *st, "scan", "--dossier", "D-7", "--name", "赵六", "--material", item,
                "--title", "材料", "--source", f"synthetic:seed={seed},sheets=1")
    status = run_cli("quire-station", *st, "status").stdout
    assert "outbox: 2 waiting" in status
    out = run_cli("quire-station", *st, "sync").stdout  # the enrolled address
    assert "committed 2 bundle(s), 4 pages" in out
    assert "outbox: 0 waiting, 2 committed" in run_cli("quire-station", *st, "status").stdout
    verify = run_cli("quire-central", "--home", central_home, "verify").stdout
    assert "2 bundles, 4 pages — OK" in verify
    ls = run_cli("quire-central", "--home", central_home, "ls", "D-7").stdout
    assert ls.index("1-1") < ls.index("9-2-1")
    pages = run_cli("quire-central", "--home", central_home, "ls", "D-7", "9-2-1", "--json").stdout.splitlines()
    assert len(pages) == 2


def test_verify_exits_non_zero_naming_the_damaged_blob(tmp_path, central_process):
    import os

    central_home, address, _ = central_process
    st = ["--home", tmp_path / "st"]
    key = re.search(r"--key ([0-9a-f]{64})", run_cli("quire-station", *st, "init").stdout).group(1)
    sid = re.search(r"station (\S+)", run_cli("quire-station", *st, "status").stdout).group(1)
    run_cli("quire-central", "--home", central_home, "stations", "add", sid, "--key", key, "--unit", "u1")
    run_cli("quire-station", *st, "enroll", "--central", address)
    run_cli("quire-station", *st, "scan", "--dossier", "D-8", "--material", "2-1", "--title", "自传",
            "--source", "synthetic:seed=3,sheets=1")
    run_cli("quire-station", *st, "sync", "--central", address)
    blob = next(p for p in (central_home / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp")
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    proc = run_cli("quire-central", "--home", central_home, "verify", check=False)
    assert proc.returncode == 1
    assert f"DigestMismatch {blob}" in proc.stdout


def test_demo_runs_twice(tmp_path):
    """The README's first command, in full, then again: the second run finds nothing of the first in its
    way (its state was removed, its service stopped). The second scans one synthetic material and the SANE
    batch, not all six: the pages are the first run's to prove, a second run's whole path is this one's."""
    for extra in ([], ["--materials", "1"]):
        proc = subprocess.run([sys.executable, "-m", "station.demo", *extra], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(r"pages verified\s+(\d+) of \1 ", proc.stdout), proc.stdout
        assert "result              OK" in proc.stdout
        state = re.search(r"\(state in (\S+)\)", proc.stdout).group(1)
        assert not Path(state).exists(), f"the demo left {state} behind"
    assert "10-1   10 pages" in proc.stdout and "4-1-2" not in proc.stdout, proc.stdout
