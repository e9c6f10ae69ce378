"""The nightly fixity scrub: each run re-reads its share of the blobs, the whole archive within the
period; a blob damaged in any way (a flipped byte, cut short, deleted, its SM3 no longer matching) is
found by the run that covers it, which exits non-zero, says which pages it holds and where to restore
it from, tells systemd, and is logged."""

import json
import socket

import pytest

from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register, cli_in_process


@pytest.fixture
def blob_kind():
    """Blobs on disk: the tests damage them as a failing disk would, through the files."""
    return "disk"


@pytest.fixture
def synced(central, tmp_path):
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    for n, item in enumerate(("1-1", "4-1-2"), 1):
        scan(st, {"archive_no": "D-9"}, {"item": item, "title": "t"}, f"synthetic:seed={n},sheets=1")
    assert len(sync(st).committed) == 2
    st.close()
    with open(archive.config.home / "central.toml", "a") as toml:
        toml.write('scrub_period_days = 4\nbackup_repo = "/media/quire-backup"\n'
                   'offsite_copy = "the county archive\'s copy"\n')
    return archive


def blob_file(archive, sha256):
    """The stored file of a blob (the disk store's layout), to damage it as a failing disk would."""
    return archive.config.blobs_dir / sha256[:2] / sha256


def scrub(archive, env=None):
    proc = cli_in_process("quire-central", "--home", archive.config.home, "scrub", check=False, env=env)
    entry = json.loads(archive.catalogue.one("SELECT entry FROM audit_entries WHERE event = 'blobs.scrub'"
                                             " ORDER BY idx DESC LIMIT 1")["entry"])
    return proc, entry


def page_of(archive, sha256):
    row = archive.catalogue.one("SELECT m.archive_no, m.item, p.n FROM pages p JOIN materials m"
                                " ON m.id = p.material_id WHERE p.sha256 = ?", [sha256])
    return f"{row['archive_no']} {row['item']} page {row['n']}"


def test_each_kind_of_damage_is_found_by_the_run_that_covers_it_and_alarms_until_restored(synced):
    blobs = [r["sha256"] for r in synced.catalogue.query("SELECT sha256 FROM blobs ORDER BY sha256")]
    assert len(blobs) == 4
    flipped, cut, gone = blobs[1], blobs[2], blobs[3]
    path = blob_file(synced, flipped)
    path.chmod(0o644)
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path = blob_file(synced, cut)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1000])
    blob_file(synced, gone).unlink()
    damage = {flipped: "its bytes now hash to SHA-256", cut: "its bytes now hash to SHA-256",
              gone: "its file is gone"}

    # Period 4 days, 4 blobs: one blob a night, in digest order; the run that reads a damaged one names it,
    # and every later run reads it again and fails too.
    found = []
    for night, sha in enumerate(blobs, 1):
        proc, entry = scrub(synced)
        assert (entry["first"], entry["last"], entry["blobs"]) == (sha, sha, 1), entry
        assert entry["cycle_done"] == (night == 4)
        if sha not in damage:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert proc.stdout.splitlines()[-1].startswith("scrub OK: 1 blob(s)")
            assert entry["damaged"] == []
            continue
        found.append(sha)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert [d["sha256"] for d in entry["damaged"]] == found
        line = lines[len(found) - 1]
        assert line.startswith(f"DAMAGED blob {sha}: {damage[sha]}")
        assert f"It holds {page_of(synced, sha)}." in line
        assert "Restore it from the backup repository /media/quire-backup (restic -r /media/quire-backup restore" \
               f" latest --tag quire-central --include /blobs/{sha[:2]}/{sha}" in line
        assert "or the off-site copy the county archive's copy" in line
        assert lines[-1].startswith(f"scrub FOUND {len(found)} DAMAGED blob(s) (first {found[0][:16]})")
        assert entry["damaged"][-1]["used_by"] == [page_of(synced, sha)]

    # The flipped blob put back from a copy: the next run (a new cycle, from the first digest) says so.
    blob_file(synced, flipped).write_bytes(original)
    proc, entry = scrub(synced)
    assert entry["first"] == blobs[0] and entry["restored"] == [flipped]
    assert [d["sha256"] for d in entry["damaged"]] == [cut, gone] and proc.returncode == 1
    assert "1 damaged blob(s) restored" in proc.stdout.splitlines()[-1]

    # The statistics: the damage that stands (the exit status too) and each day's runs.
    report = cli_in_process("quire-central", "--home", synced.config.home, "scrub", "--report", check=False)
    lines = report.stdout.splitlines()
    assert report.returncode == 1 and [line.split()[2].rstrip(":") for line in lines[:2]] == [cut, gone]
    assert f"holds {page_of(synced, gone)}" in lines[1] and lines[2].startswith("last scrub 20")
    days = [[int(n) for n in line.split()[1:7]] for line in lines[3:] if line.startswith("20")]
    stored = sum(r["bytes"] for r in synced.catalogue.query("SELECT bytes FROM blobs"))
    assert [sum(d[i] for d in days) for i in (0, 1, 2, 4, 5)] == [5, 5, stored + entry["bytes"], 1, 0]
    assert days[-1][3] == 2   # damaged, as the day's last run found


def test_a_recorded_sm3_the_bytes_no_longer_match_and_the_status_line_systemd_gets(synced, tmp_path):
    sha = synced.catalogue.query("SELECT sha256 FROM blobs ORDER BY sha256 LIMIT 1")[0]["sha256"]
    with synced.catalogue.transaction() as db:
        db.execute("UPDATE blobs SET sm3 = ? WHERE sha256 = ?", ["0" * 64, sha])
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(30)
        proc = cli_in_process("quire-central", "--home", synced.config.home, "scrub", "--all", check=False,
                              env={"NOTIFY_SOCKET": address})
        status = listener.recv(4096).decode()
    assert proc.returncode == 1
    assert f"DAMAGED blob {sha}: its SM3 is " in proc.stdout and f"not the recorded {'0' * 64}" in proc.stdout
    assert status.startswith(f"STATUS=scrub FOUND 1 DAMAGED blob(s) (first {sha[:16]}): 4 blob(s)")
    assert status.endswith("cycle complete")


def test_a_clean_archive_is_read_whole_within_the_period(synced):
    (synced.config.home / "central.toml").write_text("scrub_period_days = 2\n")   # blobs on disk (blob_kind)
    proc, first = scrub(synced)
    proc2, second = scrub(synced)
    assert proc.returncode == proc2.returncode == 0
    assert first["blobs"] + second["blobs"] == 4 and second["cycle_done"]
    assert second["cycle_started"] == first["cycle_started"] and first["last"] < second["first"]


def test_nights_the_timer_missed_are_made_up_by_the_next_run(synced):
    from datetime import datetime, timedelta, timezone

    from central import scrub as scrubbing

    now = datetime.now(timezone.utc)
    first = scrubbing.scrub(synced, 4, now=now)
    assert first.blobs == 1 and not first.cycle_done
    # The machine was off for two nights: three of the period's four days are gone, so this run reads the rest.
    late = scrubbing.scrub(synced, 4, now=now + timedelta(days=3))
    assert late.blobs == 3 and late.cycle_done and late.ok
