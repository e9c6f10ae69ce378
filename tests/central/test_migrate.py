"""`quire-central migrate`: a stopped SQLite + disk archive copied onto another catalogue and an S3 bucket
(SeaweedFS), checked row by row, blob by blob and by the audit log's root; the target then serves; the
source is never changed; a cut-short run finishes when run again; wrong targets are refused."""

import hashlib
import shutil
import uuid
from pathlib import Path

import pytest

from central import config as central_config
from central import migrate, profile, stations
from central.archive import open_archive
from central.server import build_server
from station.scan import scan
from station.sync import sync
from station import config as station_config
from station.home import open_station
from tests.station.test_failover import Serve
from tests.conftest import make_station, register, run_cli
from tests.s3server import stored_blobs

PROFILE = ('format = "quire.profile/1"\nname = "tests-150dpi"\nversion = 1\nextends = "gbt33870"\n'
           'title = "gbt33870 at 150 dpi, for fast tests"\n[resolution]\nmin_dpi = 150\n')


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A stopped archive on SQLite + disk with two dossiers (three materials) synced by a real station;
    yields (home, station home)."""
    root = tmp_path_factory.mktemp("migrate-source")
    home = root / "central"
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "tests-150dpi.toml").write_text(PROFILE)
    archive = open_archive(central_config.load(home))
    profile.set_default(archive, "tests-150dpi")
    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    st = register(archive, f"127.0.0.1:{port}", make_station(root / "st", f"127.0.0.1:{port}", dpi=150))
    try:
        for n, (dossier, item) in enumerate((("D-1", "1-1"), ("D-1", "4-1-2"), ("D-2", "2-1")), 1):
            scan(st, {"archive_no": dossier}, {"item": item, "title": f"材料 {n}"}, f"synthetic:seed={n},sheets=1")
        assert len(sync(st).committed) == 3
    finally:
        st.close()
        server.stop(grace=None).wait()
        archive.close()
    yield home, root / "st"


def _fingerprint(home: Path) -> dict:
    """Every file of the home with its bytes' SHA-256: what 'untouched' means."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.fixture
def target(tmp_path, s3_server):
    """Where to move to: (catalogue --to, s3 URL, credentials file), all empty."""
    creds = s3_server.credentials_file(tmp_path / "s3.toml")
    (tmp_path / "new").mkdir()
    return str(tmp_path / "new" / "central.db"), f"s3://{s3_server.bucket}/{uuid.uuid4().hex}", creds


def _migrate(home, target, check=False):
    to, blobs, creds = target
    return run_cli("quire-central", "--home", home, "migrate", "--to", to, "--blobs", blobs,
                   "--blobs-credentials", creds, check=check)


def _new_home(source_home: Path, tmp_path: Path, target) -> Path:
    """The home every process of the moved archive runs with: the old one's keys, TLS identity and
    profiles, a central.toml naming the target, the catalogue the target."""
    to, blobs, creds = target
    home = Path(to).parent
    for folder in ("keys", "tls", "profiles"):
        shutil.copytree(source_home / folder, home / folder)
    (home / "central.toml").write_text(f'blobs = "{blobs}"\nblobs_credentials = "{creds}"\n')
    return home


def test_the_copy_checks_out_the_source_stays_as_it_was_and_the_target_serves(source, target, tmp_path, s3_server):
    home, station_home = source
    before = _fingerprint(home)
    done = _migrate(home, target, check=True)
    out = done.stdout
    assert "OK. Switch central.toml" in out and f'blobs = "{target[1]}"' in out, out
    assert "blobs: 6 checked by SHA-256 in the target, 6 sent" in out, out
    assert "materials" in out and "       3 source         3 target" in out, out
    assert _fingerprint(home) == before, "the source archive was changed"

    new = _new_home(home, tmp_path, target)
    run_cli("quire-central", "--home", new, "verify")
    audit = run_cli("quire-central", "--home", new, "audit", "verify").stdout
    old_audit = run_cli("quire-central", "--home", home, "audit", "verify").stdout
    assert audit.split("— OK")[0] == old_audit.split("— OK")[0], (audit, old_audit)   # same entries, same root
    assert audit.split("root ")[1].split()[0] in out
    # Page files are in the bucket now: the disk copy is not where the moved archive reads them.
    moved = open_archive(central_config.load(new), create=False)
    try:
        assert [name for name, _ in stored_blobs(moved)] == sorted(
            p.name for p in (home / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp")
    finally:
        moved.close()

    server = Serve(new, tmp_path / "serve.log")
    try:
        st = open_station(station_config.load(station_home))
        try:
            scan(st, {"archive_no": "D-2"}, {"item": "2-2", "title": "after the move"}, "synthetic:seed=9,sheets=1")
            report = sync(st, central=server.address)
            assert len(report.committed) == 1
        finally:
            st.close()
        listing = run_cli("quire-central", "--home", new, "ls", "D-1").stdout
        assert "4-1-2" in listing and "1-1" in listing, listing
        bag = tmp_path / "bag"
        run_cli("quire-central", "--home", new, "export", "D-1", "--out", bag, "--reason", "after the move")
        assert "OK" in run_cli("quire-central", "verify-export", bag).stdout
    finally:
        server.stop()
    run_cli("quire-central", "--home", new, "audit", "verify")

