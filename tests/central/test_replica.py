"""The off-site copy (异地备份): a second archive that adopts the primary's only once all of it checks."""

import json
import os
import sqlite3

import grpc
import pytest

from central import audit, config, replica, replicate
from central.archive import open_archive
from central.server import build_server
from central.verify import verify
from quire import keys
from quire.v1 import sync_pb2, sync_pb2_grpc
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register


@pytest.fixture
def pair(tmp_path, central):
    """(primary archive, its address, copy archive, copy address, a station syncing into the primary)."""
    primary, address = central
    copy_cfg = config.load(tmp_path / "copy")
    replica.init(copy_cfg, address, keys.fingerprint(primary.public_key))
    copy = open_archive(copy_cfg)
    server, port = build_server(copy, "127.0.0.1:0")
    server.start()
    copy_address = f"127.0.0.1:{port}"
    replicate.add_copy(primary, copy_address, keys.fingerprint(copy.public_key))
    st = register(primary, address, make_station(tmp_path / "st", address, dpi=200, chunk_bytes=65536))
    yield primary, address, copy, copy_address, st
    st.close()
    server.stop(grace=None).wait()
    copy.close()


def _scan_and_sync(st, address, *items, dossier="D-1"):
    for item in items:
        seed = sum(ord(c) * 7 ** i for i, c in enumerate(dossier + item)) % 100_000  # other pages per material
        scan(st, {"archive_no": dossier, "name": "张三"}, {"item": item, "title": "t"},
             f"synthetic:seed={seed},sheets=1")
    report = sync(st, address, sleep=lambda s: None)
    assert not report.failed and not report.rejected, report


def _pages(archive) -> dict:
    return {(r["archive_no"], r["item"], r["n"]): r["sha256"] for r in archive.catalogue.query(
        "SELECT m.archive_no, m.item, p.n, p.sha256 FROM pages p JOIN materials m ON m.id = p.material_id")}


def _view(copy):
    """The copy checked under the primary's key, as 'promote' checks it."""
    state = replica.load_state(copy.config)
    return replica.Archive(copy.config, replica._PublicKeyOnly(bytes.fromhex(state["primary_key"])),
                           copy.catalogue, copy.blobs, copy.tls)


def test_the_copy_holds_every_bundle_and_the_primarys_own_log(pair, capsys):
    primary, address, copy, _, st = pair
    _scan_and_sync(st, address, "1-1", "4-1-2")
    report = replicate.push(primary, sleep=lambda s: None)
    assert report.blobs_sent == len(_pages(primary)) + 2   # the pages, the catalogue snapshot, its own profile
    profile_file = "profiles/tests-150dpi.toml"
    assert (copy.config.home / profile_file).read_bytes() == (primary.config.home / profile_file).read_bytes()
    assert _pages(copy) == _pages(primary) and len(_pages(copy)) == 4   # two duplex sheets
    mine, theirs = audit.verify_log(primary), audit.verify_log(_view(copy))
    assert theirs.ok and (theirs.entries, theirs.root) == (mine.entries, mine.root)
    assert verify(_view(copy)).ok
    lag = replicate.lag(primary)
    assert (lag["entries_behind"], lag["bundles_behind"], lag["last_error"]) == (0, 0, "")

    _scan_and_sync(st, address, "9-2-1")
    lag = replicate.lag(primary)
    assert lag["entries_behind"] >= 1 and lag["bundles_behind"] == 1
    assert replicate.health_problems(lag)
    again = replicate.push(primary, sleep=lambda s: None)
    assert again.blobs_sent == 2 + 1   # only the new material's pages travel, and the snapshot
    assert _pages(copy) == _pages(primary)
    assert replicate.lag(primary)["entries_behind"] == 0
    assert replicate.push(primary, sleep=lambda s: None).up_to_date
    from central.cli import main

    assert main(["--home", str(primary.config.home), "stats", "replication", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["entries_behind"], row["bundles_behind"], row["last_error"]) == (0, 0, "") and row["last_contact"]


def test_stations_and_readers_are_turned_away_from_a_copy(pair, capsys):
    primary, address, copy, copy_address, st = pair
    _scan_and_sync(st, address, "1-1")
    replicate.push(primary, sleep=lambda s: None)
    with grpc.secure_channel(copy_address, grpc.ssl_channel_credentials(copy.tls.cert_pem),
                             options=[("grpc.ssl_target_name_override", "quire-central")]) as channel:
        stub = sync_pb2_grpc.StationSyncStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Offer(sync_pb2.OfferRequest(station_id="st-test", manifest=b"{}", signature=b"0" * 64), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "off-site copy" in caught.value.details() and "promote" in caught.value.details()
    from central.cli import main

    assert main(["--home", str(copy.config.home), "serve", "--listen", "127.0.0.1:0", "--no-advertise",
                 "--web", "127.0.0.1:0"]) != 0
    assert "off-site copy" in capsys.readouterr().err


def test_a_copy_refuses_calls_not_signed_by_its_primary(pair, tmp_path):
    primary, address, copy, copy_address, _ = pair
    impostor = open_archive(config.load(tmp_path / "impostor"))
    try:
        state = replicate.add_copy(impostor, copy_address, keys.fingerprint(copy.public_key))
        with pytest.raises(replicate.CopyRefused, match="not signed by"):
            replicate.push(impostor, sleep=lambda s: None)
        assert state["copy_fingerprint"] == keys.fingerprint(copy.public_key)
    finally:
        impostor.close()


def _tamper(primary, sql: str, params=()):
    conn = sqlite3.connect(primary.config.db_path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_a_forged_bundle_is_refused_and_the_copy_keeps_its_state(pair):
    primary, address, copy, _, st = pair
    _scan_and_sync(st, address, "1-1")
    replicate.push(primary, sleep=lambda s: None)
    before = replica.load_state(copy.config)
    _scan_and_sync(st, address, "4-1-2")
    # Someone with the primary's database rewrites the new material's title inside its signed manifest.
    bundle = primary.catalogue.one("SELECT id, manifest FROM bundles ORDER BY committed_at DESC LIMIT 1")
    forged = bytes(bundle["manifest"]).replace(b'"title":"t"', b'"title":"x"')
    _tamper(primary, "UPDATE bundles SET manifest = ? WHERE id = ?", [forged, bundle["id"]])
    with pytest.raises(replicate.CopyRefused) as caught:
        replicate.push(primary, sleep=lambda s: None)
    assert f"bundle {bundle['id'][:12]}" in str(caught.value) and "signature" in str(caught.value).lower()
    assert replica.load_state(copy.config)["checkpoint"] == before["checkpoint"]
    assert len(_pages(copy)) == 2 and verify(_view(copy)).ok   # one duplex sheet: the first material
    assert replica.verify_copy(copy.config).ok
    lag = replicate.lag(primary)
    assert "refused" in lag["last_error"] and replicate.health_problems(lag)


def _saved(primary, path):
    """The primary's catalogue as a backup taken now would hold it."""
    target = sqlite3.connect(path)
    with primary.catalogue._lock:
        primary.catalogue.db.conn.backup(target)
    target.close()
    return path


def _restored(primary, path):
    """The primary's catalogue put back from that backup (its blobs stay)."""
    source = sqlite3.connect(path)
    with primary.catalogue._lock:
        source.backup(primary.catalogue.db.conn)
    source.close()


def test_a_rolled_back_primary_log_is_refused_naming_both_roots(pair, tmp_path):
    primary, address, copy, _, st = pair
    _scan_and_sync(st, address, "1-1")
    old = _saved(primary, tmp_path / "old.db")
    older = audit.latest_checkpoint(primary)
    _scan_and_sync(st, address, "4-1-2")
    replicate.push(primary, sleep=lambda s: None)
    held = replica.held_checkpoint(replica.load_state(copy.config))
    assert held.tree_size > older.tree_size
    _restored(primary, old)   # the primary is "restored" from an old backup
    with pytest.raises(replicate.CopyRefused) as caught:
        replicate.push(primary, sleep=lambda s: None)
    message = str(caught.value)
    assert "rolled back" in message and held.body["root_hash"] in message
    assert older.body["root_hash"] in message and "promote" in message
    assert replica.held_checkpoint(replica.load_state(copy.config)).body == held.body
    assert len(_pages(copy)) == 4


def test_a_forked_primary_log_is_refused(pair, tmp_path):
    primary, address, copy, _, st = pair
    _scan_and_sync(st, address, "1-1")
    old = _saved(primary, tmp_path / "old.db")
    _scan_and_sync(st, address, "4-1-2")
    replicate.push(primary, sleep=lambda s: None)
    held = replica.held_checkpoint(replica.load_state(copy.config))
    # History rewritten: the primary goes back to the old state and goes on differently, past the copy's size.
    _restored(primary, old)
    other = register(primary, address, make_station(tmp_path / "st2", address, station_id="st-other", dpi=200),
                     unit="unit-a")
    try:
        _scan_and_sync(other, address, "9-1-1", "9-1-2", dossier="D-2")
    finally:
        other.close()
    assert audit.latest_checkpoint(primary).tree_size > held.tree_size
    with pytest.raises(replicate.CopyRefused) as caught:
        replicate.push(primary, sleep=lambda s: None)
    assert "forked" in str(caught.value) and held.body["root_hash"] in str(caught.value)
    assert replica.held_checkpoint(replica.load_state(copy.config)).body == held.body


def test_the_copy_verifies_itself_under_the_primarys_key_and_finds_a_damaged_page(pair):
    primary, address, copy, _, st = pair
    _scan_and_sync(st, address, "1-1")
    replicate.push(primary, sleep=lambda s: None)
    assert replica.verify_copy(copy.config).ok
    sha = sorted(_pages(copy).values())[0]
    damaged = copy.blobs.where(sha)   # a disk fault at the copy's site (the test reaches into the store's file)
    os.chmod(damaged, 0o644)
    with open(damaged, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    report = replica.verify_copy(copy.config)
    assert not report.ok and any(p.kind == "DigestMismatch" and sha in str(p) for p in report.problems)
    assert replica.verify_copy(copy.config, full=False).ok   # the quick check cannot see it


@pytest.mark.parametrize("blob_kind", ["s3"])
def test_a_copy_on_s3_follows_a_primary_on_s3(tmp_path, central, request):
    from tests.conftest import use_blob_kind

    primary, address = central
    (tmp_path / "copy").mkdir()
    use_blob_kind(tmp_path / "copy", "s3", request)
    copy_cfg = config.load(tmp_path / "copy")
    replica.init(copy_cfg, address, keys.fingerprint(primary.public_key))
    copy = open_archive(copy_cfg)
    server, port = build_server(copy, "127.0.0.1:0")
    server.start()
    st = register(primary, address, make_station(tmp_path / "st", address, dpi=200, chunk_bytes=65536))
    try:
        replicate.add_copy(primary, f"127.0.0.1:{port}", keys.fingerprint(copy.public_key))
        _scan_and_sync(st, address, "1-1", "4-1-2")
        replicate.push(primary, sleep=lambda s: None)
        assert _pages(copy) == _pages(primary) and len(_pages(copy)) == 4
        assert primary.config.blobs.startswith("s3://") and copy_cfg.blobs.startswith("s3://")
        assert replica.verify_copy(copy_cfg).ok
    finally:
        st.close()
        server.stop(grace=None).wait()
        copy.close()


def test_setting_up_a_copy_is_logged_and_promotion_needs_the_primarys_own_identity(pair, tmp_path):
    primary, address, copy, _, st = pair
    added = [e for e in audit.entries(primary) if e["event"] == "replica.add"]
    assert [e["copy_key"] for e in added] == [keys.fingerprint(copy.public_key)]
    _scan_and_sync(st, address, "1-1")
    replicate.push(primary, sleep=lambda s: None)
    other = open_archive(config.load(tmp_path / "other"))   # another archive's key and certificate
    other.close()
    with pytest.raises(replica.ReplicaError, match="give the primary's own escrowed identity") as caught:
        replica.promote(copy.config, tmp_path / "other")
    assert keys.fingerprint(primary.public_key) in str(caught.value)
    assert replica.is_replica(copy.config)   # nothing changed


def test_a_copy_far_behind_takes_the_blobs_in_batches_then_the_snapshot(pair, monkeypatch):
    primary, address, copy, _, st = pair
    _scan_and_sync(st, address, "1-1", "4-1-2", "9-2-1")
    monkeypatch.setattr(replicate, "MAX_LISTED", 2)   # 6 page blobs: two listings of blobs alone, then the rest
    offers = []
    real = replica.offer
    monkeypatch.setattr(replica, "offer", lambda archive, data, sig: offers.append(json.loads(data)) or real(
        archive, data, sig))
    report = replicate.push(primary, sleep=lambda s: None)
    assert [o["snapshot"] is None for o in offers] == [True, True, False]
    assert [len(o["blobs"]) for o in offers] == [2, 2, 2]
    assert report.blobs_sent == 6 + 2   # the pages, then the snapshot and the profile
    assert _pages(copy) == _pages(primary) and replica.verify_copy(copy.config).ok
