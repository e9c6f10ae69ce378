"""Offline backups with restic (Debian's package): a snapshot of a real archive restores into a fresh
home that verify and audit verify pass, a backup taken while a station syncs is consistent, and a
wrong or exposed password is refused with what to do."""

import json
import shutil

import pytest

from central import backup
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register, cli_in_process


@pytest.fixture(autouse=True)
def restic():
    if shutil.which("restic") is None:
        pytest.fail("restic is not installed (Debian's package restic; 'make test' installs APT_PACKAGES)")


@pytest.fixture
def blob_kind():
    """restic backs up an archive whose blobs are in its home."""
    return "disk"


@pytest.fixture
def synced(central, tmp_path):
    """An archive with two materials a real station synced, and that station (to sync more)."""
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    for n, item in enumerate(("1-1", "4-1-2"), 1):
        scan(st, {"archive_no": "D-9"}, {"item": item, "title": "t"}, f"synthetic:seed={n},sheets=1")
    assert len(sync(st).committed) == 2
    yield archive, st
    st.close()


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "restic.pass"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


def central_cli(home, *args, check=True, env=None):
    return cli_in_process("quire-central", "--home", home, *args, check=check, env=env)


def assert_verifies(home):
    for command in (["verify"], ["audit", "verify"]):
        proc = central_cli(home, *command, check=False)
        assert proc.returncode == 0 and proc.stdout.splitlines()[-1].endswith("OK"), proc.stdout + proc.stderr


def test_a_backup_restores_into_a_fresh_home_that_verifies(synced, secret, tmp_path):
    archive, _ = synced
    repo, fresh = tmp_path / "repo", tmp_path / "restored"
    out = central_cli(archive.config.home, "backup", "--repo", repo, "--password-file", secret, "--init").stdout
    assert out.startswith("snapshot ") and "4 blob(s)" in out, out
    assert "correct horse" not in out
    logged = archive.catalogue.one("SELECT entry FROM audit_entries WHERE event = 'archive.backup'")
    assert json.loads(logged["entry"])["repository"] == str(repo)

    out = central_cli(tmp_path / "elsewhere", "restore", "--repo", repo, "--to", fresh,
                      env={"RESTIC_PASSWORD_FILE": str(secret)}).stdout
    assert f"--home {fresh} verify" in out
    assert sorted(p.name for p in fresh.iterdir()) == sorted(
        p.name for p in archive.config.home.iterdir() if p.name not in ("central.db-wal", "central.db-shm",
                                                                         "uploads", ".restic-cache", ".backup.lock"))
    assert_verifies(fresh)
    listing = central_cli(fresh, "ls", "D-9").stdout
    assert "1-1" in listing and "4-1-2" in listing
    # Into a home that holds an archive already: refused, nothing touched.
    proc = central_cli(tmp_path, "restore", "--repo", repo, "--password-file", secret, "--to", fresh, check=False)
    assert proc.returncode == 1 and "is not empty; restore into a new directory" in proc.stderr


def test_a_backup_taken_while_a_station_syncs_is_consistent(synced, secret, tmp_path):
    archive, st = synced
    repo = tmp_path / "repo"

    def station_syncs():   # between the catalogue's copy and restic reading the blob store
        scan(st, {"archive_no": "D-9"}, {"item": "9-2-1", "title": "任免"}, "synthetic:seed=7,sheets=2")
        assert len(sync(st).committed) == 1

    def meanwhile():
        station_syncs()
        other = central_cli(archive.config.home, "backup", "--repo", repo, "--password-file", secret, check=False)
        assert other.returncode == 1 and "another backup of" in other.stderr and "is running" in other.stderr

    first = backup.backup(archive, str(repo), secret, init=True, after_catalogue=meanwhile)
    assert first.blobs == 4
    second = backup.backup(archive, str(repo), secret)
    assert second.blobs == 8 and second.id != first.id

    for snap, items in ((first.id, {"1-1", "4-1-2"}), (second.id, {"1-1", "4-1-2", "9-2-1"})):
        home = tmp_path / f"restored-{snap}"
        central_cli(tmp_path, "restore", "--repo", repo, "--password-file", secret, "--to", home,
                    "--snapshot", snap)
        assert_verifies(home)
        rows = central_cli(home, "ls", "D-9", "--json").stdout.splitlines()
        assert {json.loads(r)["item"] for r in rows} == items


def test_a_wrong_or_exposed_password_is_refused_with_what_to_do(synced, secret, tmp_path):
    archive, _ = synced
    repo = tmp_path / "repo"
    central_cli(archive.config.home, "backup", "--repo", repo, "--password-file", secret, "--init")
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("tr0ub4dor&3\n")
    wrong.chmod(0o600)
    for command in (["backup", "--repo", repo], ["restore", "--repo", repo, "--to", tmp_path / "r"]):
        proc = central_cli(archive.config.home, *command, "--password-file", wrong, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "refused the password: wrong password" in proc.stderr
        assert "tr0ub4dor" not in proc.stdout + proc.stderr
    assert not (tmp_path / "r").exists()

    wrong.chmod(0o644)
    proc = central_cli(archive.config.home, "backup", "--repo", repo, "--password-file", wrong, check=False)
    assert proc.returncode == 1 and f"readable by others; run: chmod 600 {wrong}" in proc.stderr

    proc = central_cli(archive.config.home, "backup", "--repo", tmp_path / "none", "--password-file", secret,
                       check=False)
    assert proc.returncode == 1 and "there is no backup repository at" in proc.stderr and "--init" in proc.stderr
    assert archive.catalogue.one("SELECT COUNT(*) AS n FROM audit_entries WHERE event = 'archive.backup'")["n"] == 1


def test_the_backup_repository_is_checked_and_damage_in_it_is_named(synced, secret, tmp_path):
    archive, _ = synced
    repo = tmp_path / "repo"
    with open(archive.config.home / "central.toml", "a") as toml:
        toml.write("scrub_period_days = 1\n")   # each check re-reads all of the repository's data
    out = central_cli(archive.config.home, "backup", "--repo", repo, "--password-file", secret, "--init",
                      "--check").stdout
    assert out.splitlines()[-1] == f"repository {repo} checked, data part 1/1 re-read: OK"
    pack = max((p for p in (repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    pack.chmod(0o644)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    proc = central_cli(archive.config.home, "backup", "--repo", repo, "--password-file", secret, "--check",
                       check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"the backup repository {repo} failed its check (data part 1/1)" in proc.stderr
    assert "Pack ID does not match" in proc.stderr and "take a backup into another repository now" in proc.stderr
    checks = [json.loads(r["entry"]) for r in archive.catalogue.query(
        "SELECT entry FROM audit_entries WHERE event = 'archive.backup_check' ORDER BY idx")]
    assert [c["ok"] for c in checks] == [True, False] and checks[1]["problems"]
