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
from central.archive import open_archive, open_blobs
from central.server import build_server
from central.store.blobs_s3 import S3BlobStore
from central.store.catalogues import open_catalogue
from station.scan import scan
from station.sync import sync
from station import config as station_config
from station.home import open_station
from tests.station.test_failover import Serve
from tests.conftest import TEST_PROFILE, make_station, register, run_cli, write_test_profile
from tests.s3server import stored_blobs



@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A stopped archive on SQLite + disk with two dossiers (three materials) synced by a real station;
    yields (home, station home)."""
    root = tmp_path_factory.mktemp("migrate-source")
    home = root / "central"
    write_test_profile(home)
    archive = open_archive(central_config.load(home))
    profile.set_default(archive, TEST_PROFILE)
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


@pytest.fixture(params=["postgresql"])
def target_kind(request):
    """The catalogue migrate moves to (a test that also covers a new SQLite file adds "sqlite")."""
    return request.param


@pytest.fixture
def target(tmp_path, s3_server, target_kind, request):
    """Where to move to: (catalogue --to, s3 URL, credentials file), all empty: a fresh database in the
    session's private PostgreSQL cluster (or a new SQLite file), a fresh prefix in the SeaweedFS bucket."""
    creds = s3_server.credentials_file(tmp_path / "s3.toml")
    (tmp_path / "new").mkdir()
    if target_kind == "postgresql":
        to = request.getfixturevalue("pg_cluster").create_database()
    else:
        to = str(tmp_path / "new" / "central.db")
    return to, f"s3://{s3_server.bucket}/{uuid.uuid4().hex}", creds


def _migrate(home, target, check=False):
    to, blobs, creds = target
    return run_cli("quire-central", "--home", home, "migrate", "--to", to, "--blobs", blobs,
                   "--blobs-credentials", creds, check=check)


def _new_home(source_home: Path, tmp_path: Path, target) -> Path:
    """The home every process of the moved archive runs with: the old one's keys, TLS identity and
    profiles, and a central.toml naming the target's catalogue and bucket."""
    to, blobs, creds = target
    home = tmp_path / "new"
    for folder in ("keys", "tls", "profiles"):
        shutil.copytree(source_home / folder, home / folder, dirs_exist_ok=True)
    catalogue = f'catalogue = "{to}"\n' if to.startswith("postgresql://") else ""
    (home / "central.toml").write_text(f'{catalogue}blobs = "{blobs}"\nblobs_credentials = "{creds}"\n')
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



@pytest.mark.parametrize("target_kind", ["postgresql", "sqlite"], indirect=True)
def test_a_run_cut_short_finishes_when_run_again(source, target, target_kind):
    home, _ = source
    to, blobs, creds = target
    cfg = central_config.load(home)
    seen = []

    def cut(line: str) -> None:
        seen.append(line)
        if line.startswith("table "):
            raise KeyboardInterrupt   # Ctrl-C after the blobs and the first table went across

    src_blobs = open_blobs(cfg)
    dst = S3BlobStore(blobs, creds)
    catalogue = open_catalogue(to if target_kind == "postgresql" else Path(to))
    try:
        with pytest.raises(KeyboardInterrupt):
            migrate.migrate(cfg, catalogue, to, src_blobs, dst, progress=cut)
    finally:
        for opened in (catalogue, dst, src_blobs):
            opened.close()
    assert seen[0].startswith("blobs: 6 sent"), seen
    again = _migrate(home, target, check=True).stdout
    assert "blobs: 6 checked by SHA-256 in the target, 0 sent (0 bytes)" in again, again
    assert "OK. Switch" in again
    assert "RowCount" not in again


@pytest.mark.parametrize("target_kind", ["postgresql", "sqlite"], indirect=True)
def test_the_catalogue_inserts_many_rows_in_one_transaction(target, target_kind):
    """What migrate copies a batch with: a statement over many rows, all written or none (on both kinds)."""
    to = target[0]
    catalogue = open_catalogue(to if target_kind == "postgresql" else Path(to))
    insert = ("INSERT INTO units (id, name, created_at) VALUES (:id, :name, :at) ON CONFLICT DO NOTHING")
    try:
        catalogue.insert_many(insert, [{"id": f"u-{n}", "name": f"单位 {n}", "at": "2026-01-01"} for n in range(3)])
        catalogue.insert_many(insert, [{"id": "u-1", "name": "kept as it was", "at": "2026-01-02"},
                                       {"id": "u-3", "name": "单位 3", "at": "2026-01-02"}])
        with pytest.raises(Exception):   # a row breaking a constraint: the rows before it are not kept either
            catalogue.insert_many(insert, [{"id": "u-4", "name": "单位 4", "at": "x"},
                                           {"id": "u-5", "name": None, "at": "x"}])
        assert catalogue.query("SELECT id, name FROM units ORDER BY id") == [
            {"id": f"u-{n}", "name": f"单位 {n}"} for n in range(4)]
    finally:
        catalogue.close()


def test_a_target_holding_another_archive_is_refused_and_left_alone(source, target, tmp_path):
    home, _ = source
    to, blobs, creds = target
    other = tmp_path / "new"
    (other / "central.toml").write_text(f'catalogue = "{to}"\n' if to.startswith("postgresql://") else "")
    archive = open_archive(central_config.load(other))
    try:
        stations.add(archive, "st-other", "ab" * 32, "unit-z")
        held = archive.catalogue.query("SELECT id, unit FROM stations")
        entries = archive.catalogue.query("SELECT COUNT(*) AS n FROM audit_entries")
    finally:
        archive.close()
    refused = _migrate(home, target)
    assert refused.returncode == 73, refused
    assert "already holds another archive" in refused.stderr and "give migrate an empty database" in refused.stderr
    assert "stations 1" in refused.stderr, refused.stderr
    archive = open_archive(central_config.load(other), create=False)
    try:   # nothing was added to it
        assert archive.catalogue.query("SELECT id, unit FROM stations") == held
        assert archive.catalogue.query("SELECT COUNT(*) AS n FROM audit_entries") == entries
        assert archive.catalogue.query("SELECT COUNT(*) AS n FROM materials") == [{"n": 0}]
    finally:
        archive.close()


def test_a_bucket_prefix_holding_another_archive_s_pages_is_refused_and_left_alone(source, target):
    """The catalogue is empty but the prefix already holds page files this archive does not have."""
    home, _ = source
    to, blobs, creds = target
    other = S3BlobStore(blobs, creds)
    try:
        theirs = other.put(b"a page of another archive")
        refused = _migrate(home, target)
        assert refused.returncode == 73, refused
        prefix = blobs.rstrip("/") + "/"
        assert f"{prefix} already holds page files of another archive" in refused.stderr, refused.stderr
        assert theirs in refused.stderr and "give --blobs a prefix of its own" in refused.stderr
        assert other.sample(100) == [theirs]   # nothing was copied beside it
    finally:
        other.close()


def test_another_archive_s_pages_listed_after_this_one_s_are_found_too(source, target, monkeypatch):
    """Every blob under the prefix is looked at, a listing page at a time — not only the first page: here a
    run cut short left this archive's six pages there, and another archive's page sorts after them all.
    (Pages of two blobs here; production lists 1 000 at a time, as many as S3 returns at once.)"""
    home, _ = source
    to, blobs, creds = target
    cfg = central_config.load(home)
    src, dst, catalogue = open_blobs(cfg), S3BlobStore(blobs, creds), open_catalogue(to)
    ours = sorted(p.name for p in (home / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp")
    try:
        for sha in ours:
            with src.open(sha) as fh:
                dst.put(fh.read())
        n = 0
        while hashlib.sha256(f"a page of another archive {n}".encode()).hexdigest() < ours[-1]:
            n += 1
        theirs = dst.put(f"a page of another archive {n}".encode())
        monkeypatch.setattr(migrate, "BLOB_PAGE", 2)
        with pytest.raises(migrate.TargetNotEmpty, match=f"already holds page files of another archive \\(1 of the "
                                                          f"first 7 listed .* e.g. {theirs}\\)"):
            migrate.migrate(cfg, catalogue, to, src, dst)
        assert catalogue.query("SELECT COUNT(*) AS n FROM audit_entries") == [{"n": 0}]   # nothing copied
        assert dst.sample(2, after=ours[-1]) == [theirs] and dst.sample(2, after=theirs) == []
    finally:
        for opened in (catalogue, dst, src):
            opened.close()


def test_the_archive_s_own_catalogue_as_target_is_refused(source):
    home, _ = source
    refused = run_cli("quire-central", "--home", home, "migrate", "--to", home / "central.db", check=False)
    assert refused.returncode == 78, refused
    assert "is this archive's own catalogue" in refused.stderr


def test_a_target_served_from_since_is_not_copied_into_again(source, target, tmp_path):
    home, _ = source
    _migrate(home, target, check=True)
    moved = open_archive(central_config.load(_new_home(home, tmp_path, target)), create=False)
    try:
        stations.add(moved, "st-new", "cd" * 32, "unit-a")   # the moved archive at work: a new audit entry
    finally:
        moved.close()
    refused = _migrate(home, target)
    assert refused.returncode == 73, refused
    assert "has been served from since" in refused.stderr and "serve from the target" in refused.stderr
    again = _migrate(tmp_path / "new", target)   # the moved archive itself is not moved again
    assert again.returncode == 78 and "already; migrate moves an archive off its SQLite file" in again.stderr, again


def test_a_blob_the_target_holds_with_other_bytes_is_named_and_not_overwritten(source, target, s3_server):
    home, _ = source
    to, blobs, creds = target
    victims = sorted(p.name for p in (home / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp")[:2]
    client, bucket, prefix = s3_server.client(), s3_server.bucket, blobs.split("/", 3)[3]
    size = (next((home / "blobs").rglob(victims[1]))).stat().st_size
    try:
        client.put_object(Bucket=bucket, Key=f"{prefix}/blobs/{victims[0][:2]}/{victims[0]}", Body=b"not this page")
        client.put_object(Bucket=bucket, Key=f"{prefix}/blobs/{victims[1][:2]}/{victims[1]}", Body=b"x" * size)
        failed = _migrate(home, target)
        assert failed.returncode == 1, failed
        out = failed.stdout
        assert f"BlobMismatch s3://{bucket}/{prefix}/blobs/{victims[0][:2]}/{victims[0]}" in out, out
        assert f"expected SHA-256 {victims[1]}, the target's bytes hash to {hashlib.sha256(b'x' * size).hexdigest()}" \
               in out, out
        assert "do not switch" in out and "OK. Switch" not in out
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/blobs/{victims[0][:2]}/{victims[0]}")["Body"]
        assert body.read() == b"not this page"   # never overwritten
    finally:
        client.close()


def test_migrate_refuses_while_a_serve_process_holds_the_home(source, target, tmp_path):
    home, _ = source
    server = Serve(home, tmp_path / "serve.log")
    try:
        refused = _migrate(home, target)
    finally:
        server.stop()
    assert refused.returncode == 75, refused
    assert f"is open in process(es) {server.proc.pid}" in refused.stderr, refused.stderr
    assert "stop every 'quire-central serve' of this home" in refused.stderr
    assert "table " not in refused.stdout   # nothing copied
