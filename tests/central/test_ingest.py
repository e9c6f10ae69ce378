"""Central verifies before it trusts: through the real gRPC API, with a real station."""

import json
import os

import grpc
import pytest

from central import stations
from central.verify import verify
from quire import manifest as manifest_format
from quire.canonical import canonical_bytes
from quire.v1 import sync_pb2, sync_pb2_grpc
from station import outbox
from station.scan import scan
from station.sync import sync
from station.enrol import enroll
from station.transport import open_channel
from tests.conftest import make_station, register
from tests.s3server import partial_uploads, requests_sent, stored_blobs


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param

DOSSIER = {"archive_no": "D-0001", "name": "王五"}


def scan_one(station, item="1-1", seed=1, sheets=1):
    return scan(station, DOSSIER, {"item": item, "title": "干部履历表"}, f"synthetic:seed={seed},sheets={sheets}")


def catalogued(archive) -> dict:
    return archive.catalogue.one(
        "SELECT (SELECT COUNT(*) FROM materials) AS materials, (SELECT COUNT(*) FROM pages) AS pages,"
        " (SELECT COUNT(*) FROM blobs) AS blobs")


def blob_files(archive) -> list:
    return stored_blobs(archive)


@pytest.fixture
def small_station(tmp_path, central):
    archive, address = central
    # Tried once: these tests are about what one attempt does, not about retrying.
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150, sync_retry_span_s=0))
    yield st
    st.close()


def test_synced_bundle_is_catalogued_and_receipt_stored(central, small_station):
    archive, _ = central
    result = scan_one(small_station, sheets=2)
    report = sync(small_station)
    assert report.committed == [result.bundle_id]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": len(set(
        p["sha256"] for p in small_station.store.pages(result.batch_id)))}
    row = outbox.get(small_station.store, result.bundle_id)
    assert row["state"] == "committed"
    body = json.loads(row["receipt"])
    assert body["bundle_id"] == result.bundle_id and body["pages"] == 4
    assert verify(archive).ok


def test_syncing_twice_stores_nothing_twice(central, small_station):
    archive, address = central
    result = scan_one(small_station)
    sync(small_station)
    files, counts = blob_files(archive), catalogued(archive)
    assert len(files) == counts["blobs"] > 0  # every catalogued blob is in the store, once
    # A second sync has nothing to send; a replayed offer gets the same receipt and stores nothing.
    assert sync(small_station).committed == []
    row = outbox.get(small_station.store, result.bundle_id)
    with open_channel(small_station, address) as ch:
        again = sync_pb2_grpc.StationSyncStub(ch).Offer(sync_pb2.OfferRequest(
            station_id=small_station.station_id, manifest=row["manifest"], signature=row["signature"]))
        commit = sync_pb2_grpc.StationSyncStub(ch).Commit(sync_pb2.CommitRequest(
            station_id=small_station.station_id, bundle_id=result.bundle_id))
    assert list(again.missing_sha256) == []
    assert again.receipt.receipt == row["receipt"] == commit.receipt.receipt
    assert blob_files(archive) == files and catalogued(archive) == counts


def test_unknown_station_is_refused_and_nothing_catalogued(tmp_path, central):
    archive, address = central
    stranger = make_station(tmp_path / "stranger", address, station_id="st-stranger", dpi=150)
    assert enroll(stranger, address).state == "pending"  # asked, never approved
    result = scan_one(stranger)
    report = sync(stranger)
    assert "st-stranger" in report.stopped and "not registered" in report.stopped and not report.rejected
    assert outbox.get(stranger.store, result.bundle_id)["state"] == "sealed"  # the station is refused, not the bundle
    assert catalogued(archive) == {"materials": 0, "pages": 0, "blobs": 0}
    stranger.close()


def test_bad_signature_is_refused_and_nothing_catalogued(central, small_station):
    archive, _ = central
    result = scan_one(small_station)
    sig = bytearray(outbox.get(small_station.store, result.bundle_id)["signature"])
    sig[0] ^= 1
    small_station.store.db.execute("UPDATE bundles SET signature = ?", [bytes(sig)])
    report = sync(small_station)
    assert "signature does not verify" in report.rejected[result.bundle_id]
    assert catalogued(archive) == {"materials": 0, "pages": 0, "blobs": 0}


def test_blob_not_matching_the_manifest_is_refused_by_name(central, small_station):
    archive, _ = central
    result = scan_one(small_station)
    page = small_station.store.pages(result.batch_id)[0]
    path = small_station.store.page_path(page["sha256"], page["media_type"])
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = sync(small_station)
    reason = report.rejected[result.bundle_id]
    assert page["sha256"] in reason and "no longer matches the sealed manifest" in reason and "rescan" in reason
    assert catalogued(archive)["materials"] == 0 and catalogued(archive)["pages"] == 0
    assert not archive.blobs.has(page["sha256"])
    assert not partial_uploads(archive), "corrupt partial upload left behind"


def test_unknown_manifest_version_is_refused_by_name(central, small_station):
    archive, address = central
    result = scan_one(small_station)
    body = json.loads(outbox.get(small_station.store, result.bundle_id)["manifest"])
    body["format"] = "quire.bundle/99"
    data = canonical_bytes(body)
    signature = small_station.key.sign(b"quire.bundle.v1\x00" + data).signature
    with open_channel(small_station, address) as ch, pytest.raises(grpc.RpcError) as info:
        sync_pb2_grpc.StationSyncStub(ch).Offer(sync_pb2.OfferRequest(
            station_id=small_station.station_id, manifest=data, signature=signature))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "quire.bundle/99" in info.value.details()
    assert catalogued(archive) == {"materials": 0, "pages": 0, "blobs": 0}
    assert archive.catalogue.query("SELECT * FROM bundles") == []


def test_manifest_claiming_another_station_is_refused(tmp_path, central, small_station):
    archive, address = central
    other = register(archive, address, make_station(tmp_path / "other", address, station_id="st-other"))
    result = scan_one(small_station)
    body = json.loads(outbox.get(small_station.store, result.bundle_id)["manifest"])
    signed = manifest_format.seal(dict(body, station_id=small_station.station_id), other.key)
    with open_channel(other, address) as ch, pytest.raises(grpc.RpcError) as info:
        sync_pb2_grpc.StationSyncStub(ch).Offer(sync_pb2.OfferRequest(
            station_id="st-other", manifest=signed.data, signature=signed.signature))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sent by 'st-other'" in info.value.details()
    other.close()


def test_commit_before_upload_asks_to_offer_again(central, small_station):
    _, address = central
    result = scan_one(small_station)
    row = outbox.get(small_station.store, result.bundle_id)
    with open_channel(small_station, address) as ch:
        stub = sync_pb2_grpc.StationSyncStub(ch)
        stub.Offer(sync_pb2.OfferRequest(station_id=small_station.station_id,
                                         manifest=row["manifest"], signature=row["signature"]))
        with pytest.raises(grpc.RpcError) as info:
            stub.Commit(sync_pb2.CommitRequest(station_id=small_station.station_id, bundle_id=result.bundle_id))
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert sync(small_station).committed == [result.bundle_id]  # and the normal path still works


def test_same_material_twice_is_rejected_with_the_reason(tmp_path, central, small_station):
    archive, address = central
    scan_one(small_station)
    sync(small_station)
    second = register(archive, address, make_station(tmp_path / "second", address, station_id="st-second", dpi=150))
    result = scan_one(second, seed=9)
    report = sync(second)
    assert "already catalogued" in report.rejected[result.bundle_id]
    assert catalogued(archive)["materials"] == 1
    second.close()


def test_station_refuses_a_central_with_another_key(tmp_path, central, small_station):
    from central import config
    from central.archive import open_archive
    from central.server import build_server
    from station.errors import CentralKeyMismatch

    impostor = open_archive(config.load(tmp_path / "impostor"))
    stations.add(impostor, small_station.station_id, small_station.public_key.hex(), "unit-a")
    server, port = build_server(impostor, "127.0.0.1:0")
    server.start()
    try:
        scan_one(small_station)
        with pytest.raises(CentralKeyMismatch, match="not the one pinned at enrolment"):
            sync(small_station, f"127.0.0.1:{port}")
        assert impostor.catalogue.query("SELECT * FROM bundles") == []
    finally:
        server.stop(None).wait()
        impostor.close()


def test_unreachable_central_keeps_bundles_queued(tmp_path, central, small_station):
    from station.errors import CentralUnreachable

    result = scan_one(small_station)
    with pytest.raises(CentralUnreachable, match="stay queued"):
        sync(small_station, "127.0.0.1:9")  # discard port: nothing listens
    assert outbox.get(small_station.store, result.bundle_id)["state"] == "sealed"
    assert sync(small_station).committed == [result.bundle_id]


def test_a_blob_stored_but_not_yet_recorded_is_recorded_by_the_commit(central, small_station, monkeypatch):
    """The archive stopped after moving the page files into the store, before their catalogue rows."""
    from central import uploads

    archive, _ = central
    monkeypatch.setattr(uploads.GroupCommit, "_store",
                        lambda self, uploads: self._refused.update(self.archive.blobs.finish_many(uploads)))
    result = scan_one(small_station, sheets=2)
    assert sync(small_station).committed == [result.bundle_id]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4}
    assert verify(archive).ok


def test_blobs_the_archive_failed_to_store_are_not_answered_as_stored(central, small_station, monkeypatch):
    """Storing a finished group fails (the store's disk gone): the Write call fails, nothing is
    catalogued, and the next sync stores the bundle."""
    archive, _ = central
    result = scan_one(small_station, sheets=2)

    def store_gone(self, uploads):
        raise OSError(5, "Input/output error", self.where("0" * 64))

    monkeypatch.setattr(type(archive.blobs), "finish_many", store_gone)
    first = sync(small_station)
    # The Write call itself reports the failure (an incident for the administrator), rather than
    # answering "stored" and leaving the Commit to find the files missing.
    assert first.committed == [] and "INTERNAL: internal error, incident" in first.failed[result.bundle_id]
    offered = json.loads(archive.catalogue.one("SELECT manifest FROM bundles WHERE id = ?", [result.bundle_id])["manifest"])
    assert catalogued(archive)["blobs"] == 0 and not any(archive.blobs.has(p["sha256"]) for p in offered["pages"])
    monkeypatch.undo()
    assert sync(small_station).committed == [result.bundle_id]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4} and verify(archive).ok


# ---- the typed page record (quire.bundle/2), and bundles of older stations -------------------------

def _folder(tmp_path, dpi_in_file: bool):
    """A folder of two page images, as another capture device left them; with or without a stated dpi."""
    from PIL import Image

    from station.capture.synthetic import render_page

    folder = tmp_path / f"feeder-{dpi_in_file}"
    folder.mkdir()
    for i in range(2):
        extra = {"dpi": (150, 150)} if dpi_in_file else {}
        Image.fromarray(render_page(seed=4, index=i, dpi=150).image).save(folder / f"p{i + 1}.jpg", **extra)
    return folder


def test_a_page_whose_resolution_was_assumed_is_refused_naming_it_and_a_measured_one_accepted(
        tmp_path, central, small_station):
    from station.capture import open_source

    archive, _ = central
    folder = _folder(tmp_path, dpi_in_file=False)
    assumed = scan(small_station, DOSSIER, {"item": "1-1", "title": "履历"}, f"folder:{folder}")
    reason = sync(small_station).rejected[assumed.bundle_id]
    assert "AssumedResolution pages 1-2: 150 dpi was assumed, not measured" in reason
    assert "rescan the page, or measure its resolution and import it again with --dpi" in reason
    assert catalogued(archive)["materials"] == 0
    # The operator measured the pages (a ruler on the image: 150 dpi) and imports them again with --dpi.
    measured = open_source(f"folder:{folder}", 150, dpi_given=True)
    again = scan(small_station, DOSSIER, {"item": "1-1", "title": "履历", "rescan": True}, measured)
    assert sync(small_station).committed == [again.bundle_id]
    # A file that states its resolution needs no word from the operator.
    stated = scan(small_station, DOSSIER, {"item": "1-2", "title": "履历"}, f"folder:{_folder(tmp_path, True)}")
    assert sync(small_station).committed == [stated.bundle_id]
    sources = [json.loads(r["record_json"])["dpi_source"] for r in archive.catalogue.query("SELECT record_json FROM pages")]
    assert sorted(sources) == ["file", "file", "operator", "operator"]


def _seal_crafted(station, item, page):
    batch = station.store.open_batch(DOSSIER, {"item": item, "title": "履历"}, "test", "op")
    station.store.add_page(batch.id, 1, page)
    return outbox.seal_batch(station.store, batch.id, station.station_id, station.key)


def test_a_reworded_or_translated_colour_reason_is_judged_the_same(central, small_station):
    from tests.central.test_standards import SEAL_FOUND, page

    reasons = {"1-1": "red content (seal/heading) 1.20% of page; policy auto → grey",
               "1-2": "seal found, kept grey by the operator",
               "1-3": "发现红色印章，占页面 1.20%；策略 自动 → 灰度"}
    bundles = {item: _seal_crafted(small_station, item, page(dpi=150, colour_reason=reason, colour_evidence=SEAL_FOUND))
               for item, reason in reasons.items()}
    told = sync(small_station).rejected
    assert set(told) == set(bundles.values())       # all three refused, whatever the words
    for bid in bundles.values():
        assert "ColourRequired page 1: stored as grey, but the station found red on it, which needs colour" in told[bid]
    # And a reason naming red seals decides nothing when the evidence found no colour.
    plain = _seal_crafted(small_station, "1-4", page(dpi=150, colour_reason=reasons["1-1"]))
    assert sync(small_station).committed == [plain]


def test_a_version_1_bundle_from_an_older_station_is_still_accepted_with_a_warning(central, small_station):
    from quire import keys

    archive, _ = central
    result = scan_one(small_station)
    row = outbox.get(small_station.store, result.bundle_id)
    body = dict(json.loads(row["manifest"]), format=manifest_format.FORMAT_1)
    for p in body["pages"]:     # what a station before quire.bundle/2 recorded
        del p["record"]["dpi_source"], p["record"]["colour_evidence"]
    data = canonical_bytes(body)
    old_id = manifest_format.SignedManifest(body, data, b"").bundle_id
    small_station.store.db.execute("UPDATE bundles SET id = ?, manifest = ?, signature = ? WHERE id = ?",
                                   [old_id, data, keys.sign(small_station.key, keys.BUNDLE_CONTEXT, data),
                                    result.bundle_id])
    assert sync(small_station).committed == [old_id]
    receipt = json.loads(outbox.get(small_station.store, old_id)["receipt"])
    assert any(w.startswith("LegacyRecord: a quire.bundle/1 bundle records neither")
               for w in receipt["standards"]["warnings"])
    assert catalogued(archive)["materials"] == 1 and verify(archive).ok


# ---- the object store is asked before the catalogue transaction, not inside it (issue 16) ----------

class _WatchedBlobs:
    """The archive's own blob store, noting each call (method, blob) and those made by a thread that
    holds a catalogue transaction open — on PostgreSQL the archive's one writer lock."""

    def __init__(self, blobs, in_transaction):
        self._blobs, self._in_transaction = blobs, in_transaction
        self.calls, self.under_lock = [], []

    def __getattr__(self, name):
        found = getattr(self._blobs, name)
        if not callable(found):
            return found

        def called(*args, **kwargs):
            self.calls.append((name, next((a for a in args if isinstance(a, str) and len(a) == 64), None)))
            if self._in_transaction():
                self.under_lock.append(name)
            return found(*args, **kwargs)
        return called


def _watch(archive, monkeypatch) -> _WatchedBlobs:
    import contextlib
    import threading

    held = threading.local()
    transaction = archive.catalogue.transaction

    @contextlib.contextmanager
    def watched_transaction(*args, **kwargs):
        held.depth = getattr(held, "depth", 0) + 1
        try:
            with transaction(*args, **kwargs) as db:
                yield db
        finally:
            held.depth -= 1

    monkeypatch.setattr(archive.catalogue, "transaction", watched_transaction)
    watched = _WatchedBlobs(archive.blobs, lambda: getattr(held, "depth", 0) > 0)
    monkeypatch.setattr(archive, "blobs", watched)
    return watched


def test_a_commit_asks_the_blob_store_nothing_while_it_holds_the_catalogue_and_each_page_once(
        central, small_station, monkeypatch):
    """Also when the commit has to record (and so read back) pages the archive stored but did not record."""
    from central import uploads

    archive, _ = central
    sent = requests_sent(monkeypatch)   # none on disk
    watched = _watch(archive, monkeypatch)
    monkeypatch.setattr(uploads.GroupCommit, "_store",
                        lambda self, uploads: self._refused.update(self.archive.blobs.finish_many(uploads)))
    result = scan_one(small_station, sheets=2)
    assert sync(small_station).committed == [result.bundle_id]
    calls, under_lock, requests = list(watched.calls), list(watched.under_lock), [name for name, _ in sent]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4} and verify(archive).ok
    assert under_lock == []
    pages = {sha for name, sha in calls if name == "open_upload"}
    assert len(pages) == 4
    for sha in pages:  # not recorded: asked for at the offer and uploaded without a look-up, stat()ed at the commit
        assert [name for name, s in calls if s == sha and name in ("has", "stat")] == ["stat"]
    print(f"S3 requests per page: {len(requests) / len(pages):.2f}", sorted(requests))


def test_a_synced_page_costs_the_object_store_its_upload_and_one_look_up(central, small_station, monkeypatch):
    """Offer, upload and commit of new pages: one put per page and, at the commit, one HEAD (the header the
    standards check reads was kept when the page was stored), one listing of the station's partial uploads
    per offer (every request costs the object store's server CPU: a GET about four times a HEAD's)."""
    archive, _ = central
    sent = requests_sent(monkeypatch)   # none on disk
    watched = _watch(archive, monkeypatch)
    result = scan_one(small_station, sheets=2)
    assert sync(small_station).committed == [result.bundle_id]
    calls, requests = list(watched.calls), [name for name, _ in sent]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4} and verify(archive).ok
    assert not [c for c in calls if c[0] in ("has", "stat")]   # recorded at upload: nothing to look up
    if archive.blobs.location().startswith("s3://"):
        assert sorted(requests) == ["HeadObject"] * 4 + ["ListObjectsV2"] + ["PutObject"] * 4


@pytest.mark.parametrize("blob_kind", ["scaled"])   # the page headers kept in memory are the object store's
def test_a_commit_on_a_process_that_did_not_store_the_pages_reads_their_headers(central, small_station,
                                                                                  monkeypatch):
    """Several archive processes: the commit lands on one that kept no page header (a restart, or another
    process took the upload); it reads each page's header from the store and judges the bundle the same."""
    archive, _ = central
    from central.store import blobs_s3

    monkeypatch.setattr(blobs_s3._Heads, "limit_bytes", 0)   # nothing kept, as on another process
    sent = requests_sent(monkeypatch)
    result = scan_one(small_station, sheets=2)
    assert sync(small_station).committed == [result.bundle_id]
    assert sorted(name for name, _ in sent) == ["GetObject"] * 4 + ["ListObjectsV2"] + ["PutObject"] * 4
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4} and verify(archive).ok


def test_a_recorded_page_lost_from_the_store_before_the_commit_is_asked_for_again(central, small_station,
                                                                                   monkeypatch):
    """A page's size is taken from its record at the commit; one lost from the store meanwhile is not judged
    unreadable (quarantining the bundle) but uploaded again, and the bundle commits."""
    from central import uploads

    archive, _ = central
    store, lost = uploads.GroupCommit._store, []

    def store_then_lose_one(self, finished):
        store(self, finished)
        if not lost:
            lost.append(finished[0].sha256)
            _delete_blob(self.archive.blobs, lost[0])
    monkeypatch.setattr(uploads.GroupCommit, "_store", store_then_lose_one)
    result = scan_one(small_station, sheets=2)
    committed = sync(small_station).committed + sync(small_station).committed
    assert committed == [result.bundle_id] and archive.blobs.has(lost[0])
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4} and verify(archive).ok


def _delete_blob(blobs, sha256: str) -> None:
    client = getattr(blobs, "client", None)
    if client is None:
        os.unlink(blobs.where(sha256))
    else:
        client.delete_object(Bucket=blobs.bucket, Key=blobs.where(sha256).split("/", 3)[3])


def test_the_catalogue_is_asked_about_a_bundle_s_pages_once_a_step_not_once_a_page(central, small_station,
                                                                                 monkeypatch):
    """Offer, upload and commit each ask which of the bundle's pages are recorded in one query (the commit
    once before and once inside its transaction: its sizes and the pages it must record come from one
    answer), however many pages: on PostgreSQL each query is a round trip that costs the database and the
    archive process CPU."""
    from central.store import blob_index

    archive, _ = central
    asked, rows = [], blob_index.rows
    monkeypatch.setattr(blob_index, "rows", lambda source, sql, *a: (
        asked.append(sql) if sql.startswith("SELECT") else None, rows(source, sql, *a))[1])
    result = scan_one(small_station, sheets=2)
    assert sync(small_station).committed == [result.bundle_id]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4}
    assert len(asked) == 4, asked   # offer 1, upload stream 1, commit: 1 before and 1 under the lock (5 before)


def _statements(archive, monkeypatch) -> list[str]:
    """Every SQL statement the archive sends to its catalogue from now on (SQLite's trace, psycopg's cursor)."""
    sent: list[str] = []
    if archive.catalogue.kind == "sqlite":
        archive.catalogue.db.conn.set_trace_callback(sent.append)
    else:
        import psycopg

        execute = psycopg.Cursor.execute
        monkeypatch.setattr(psycopg.Cursor, "execute",
                            lambda self, query, *a, **kw: (sent.append(str(query)), execute(self, query, *a, **kw))[1])
    return sent


def test_a_bundle_s_calls_read_the_station_once_each_and_insert_its_pages_in_one_statement(central, small_station,
                                                                                         monkeypatch):
    """A station's row is read by each call's authentication and handed to the offer, upload and commit (8
    reads for one bundle before, 4 now); the pages and the audit log's new nodes go in one INSERT each: on
    PostgreSQL every statement is a round trip the archive process and the database pay for."""
    archive, _ = central
    result = scan_one(small_station, sheets=2)
    sent = _statements(archive, monkeypatch)
    assert sync(small_station).committed == [result.bundle_id]
    assert catalogued(archive) == {"materials": 1, "pages": 4, "blobs": 4} and verify(archive).ok
    station_reads = [sql for sql in sent if "FROM stations WHERE id" in sql and "SELECT *" in sql]
    assert len(station_reads) == 4, station_reads   # Offer, Write, Commit, Notices: one each
    assert len([sql for sql in sent if sql.lstrip().startswith("INSERT INTO pages")]) == 1
    assert len([sql for sql in sent if sql.lstrip().startswith("INSERT INTO audit_nodes")]) == 1
    assert [r["n"] for r in archive.catalogue.query("SELECT n FROM pages ORDER BY n")] == [1, 2, 3, 4]


def test_a_bundle_offered_again_is_answered_without_the_writer_lock_or_a_second_check(central, small_station,
                                                                                      monkeypatch):
    """A station offers a bundle again after every pause (50 stations on one archive: 1.7 times a bundle);
    the offer answers from the bundle's row without the writer lock every commit waits for, and parses the
    manifest it checked already without checking it again. What it answers is unchanged."""
    from central import ingest

    archive, _ = central
    scan_one(small_station, sheets=2)
    bundle = outbox.pending(small_station.store)[0]
    data, signature, sid = bytes(bundle["manifest"]), bytes(bundle["signature"]), small_station.station_id
    locks, checks = [], []
    transaction, read = archive.catalogue.transaction, manifest_format.read
    monkeypatch.setattr(archive.catalogue, "transaction", lambda *a, **kw: (locks.append(1), transaction(*a, **kw))[1])
    monkeypatch.setattr(manifest_format, "read", lambda data: (checks.append(1), read(data))[1])
    first = ingest.offer(archive, sid, data, signature)
    assert (len(locks), len(checks)) == (1, 1)   # a new bundle is recorded under the lock
    again = ingest.offer(archive, sid, data, signature)
    assert (len(locks), len(checks)) == (1, 1)   # before: a lock and a check at every offer
    assert (again.bundle_id, again.missing, again.receipt) == (first.bundle_id, first.missing, None)
    assert len(first.missing) == 4
    assert sync(small_station).committed == [first.bundle_id]
    locked = len(locks)
    done = ingest.offer(archive, sid, data, signature)   # committed meanwhile: its receipt, still no lock
    assert done.missing == [] and done.receipt == outbox_receipt(small_station, first.bundle_id)
    assert len(locks) == locked and len(checks) == 1


def outbox_receipt(station, bundle_id: str) -> tuple[bytes, bytes]:
    row = station.store.db.execute("SELECT receipt, receipt_signature FROM bundles WHERE id = ?",
                                   [bundle_id]).fetchone()
    return bytes(row[0]), bytes(row[1])
