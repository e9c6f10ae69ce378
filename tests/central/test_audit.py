"""The audit log is tamper-evident: edits to the SQLite file are found by `audit verify` and
`verify`, and a history rewritten even with the central key is caught by the stations' receipts."""

import json

import pytest

from central import audit
from central.store import audit_log
from quire import keys, merkle, receipt
from quire import checkpoint as checkpoint_format
from quire.canonical import canonical_bytes
from quire.checkpoint import HistoryRewritten
from station import outbox
from station.sync import sync
from tests.central.test_quarantine import seal
from tests.central.test_standards import page
from tests.conftest import behind_the_archive, make_station, register, cli_in_process


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


def scan_item(station, item):
    return seal(station, [page(), page(colour="colour")], item, archive_no="D-9")


@pytest.fixture
def synced(tmp_path, central):
    """Two materials synced one after the other: two receipts, each with its checkpoint."""
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    bundles = []
    for item in ("1-1", "4-1-2"):
        bundles.append(scan_item(st, item))
        assert sync(st).committed == [bundles[-1]]
    yield archive, st, bundles
    st.close()


def receipt_of(station, bundle_id) -> dict:
    return json.loads(outbox.get(station.store, bundle_id)["receipt"])


def cli(archive, *args, check=False):
    return cli_in_process("quire-central", "--home", archive.config.home, *args, check=check)


def tamper(archive, *statements):
    """Edit the catalogue directly, as someone with the file or the database (not the service) would."""
    with behind_the_archive(archive) as raw:
        raw.drop_append_only()
        for sql, *params in statements:
            raw.execute(sql, *params)


def ingest_index(archive, bundle_id) -> int:
    return next(e["idx"] for e in audit.entries(archive) if e.get("bundle_id") == bundle_id and e["event"] == "ingest")


def test_receipts_carry_checkpoints_that_chain_and_prove_each_ingest(synced):
    archive, st, (first, second) = synced
    one, two = receipt_of(st, first), receipt_of(st, second)
    assert receipt.checkpoint_of(two).tree_size > receipt.checkpoint_of(one).tree_size
    assert two["audit"]["consistency"]["from_size"] == receipt.checkpoint_of(one).tree_size
    receipt.check_history(one, two, archive.public_key)  # what a station checks as a witness
    latest = audit.latest_checkpoint(archive)
    for body in (one, two):
        index = body["audit"]["entry"]
        leaf = merkle.leaf_hash(audit.entry_bytes(archive, index))
        proof = audit.inclusion_proof(archive, index, latest.tree_size)
        assert merkle.verify_inclusion(leaf, index, latest.tree_size, proof, latest.root_hash)
    out = cli(archive, "audit", "verify", check=True).stdout
    assert f"audit log: {latest.tree_size} entries" in out and out.rstrip().endswith("— OK")
    assert cli(archive, "verify", check=True).stdout.rstrip().endswith("— OK")


def test_the_log_refuses_edits_through_the_database_itself(synced):
    archive, *_ = synced
    with pytest.raises(Exception, match="append-only"):
        with behind_the_archive(archive) as raw:
            raw.execute("DELETE FROM audit_entries WHERE idx = 0")
    assert audit.verify_log(archive).ok


def test_a_deleted_audit_entry_is_detected(synced):
    archive, _, (first, _) = synced
    index = ingest_index(archive, first)
    tamper(archive, ("DELETE FROM audit_entries WHERE idx = ?", [index]))
    out = cli(archive, "audit", "verify")
    assert out.returncode == 1
    assert f"LogEntryMissing audit entry #{index}: deleted from the log" in out.stdout
    assert "CheckpointMismatch" in out.stdout and "NodesMismatch" in out.stdout
    whole = cli(archive, "verify")
    assert whole.returncode == 1
    assert f"NotInLog bundle {first[:12]}: committed, but the audit log has no ingest entry" in whole.stdout


def test_a_rewritten_audit_entry_is_detected_and_located(synced):
    archive, _, (first, _) = synced
    index = ingest_index(archive, first)
    body = json.loads(audit.entry_bytes(archive, index))
    body["archive_no"] = "D-10"  # still canonical JSON, still entry #index: only the hashes can tell
    tamper(archive, ("UPDATE audit_entries SET entry = ? WHERE idx = ?", [canonical_bytes(body), index]))
    out = cli(archive, "audit", "verify")
    assert out.returncode == 1
    # One checkpoint is signed per entry, so the altered entry is pinned down exactly.
    assert f"an entry in #{index}…#{index} was altered, removed or inserted" in out.stdout
    whole = cli(archive, "verify").stdout
    assert "LogMismatch material D-9 1-1" in whole and "records as D-10 1-1" in whole


def test_a_swapped_material_is_detected(synced):
    archive, *_ = synced
    rows = {r["item"]: r["bundle_id"] for r in archive.catalogue.query("SELECT item, bundle_id FROM materials")}
    a, b = rows["1-1"], rows["4-1-2"]
    # Point each material's catalogue row at the other's bundle, and so at its pages.
    tamper(archive, ("UPDATE materials SET bundle_id = 'parked' WHERE item = '1-1'",),
           ("UPDATE materials SET bundle_id = ? WHERE item = '4-1-2'", [a]),
           ("UPDATE materials SET bundle_id = ? WHERE item = '1-1'", [b]))
    out = cli(archive, "verify")
    assert out.returncode == 1
    assert f"LogMismatch material D-9 1-1: catalogued from bundle {b[:12]}" in out.stdout
    assert "records as D-9 4-1-2" in out.stdout
    assert f"LogMismatch material D-9 4-1-2: catalogued from bundle {a[:12]}" in out.stdout


def test_a_removed_tail_is_caught_by_the_receipts_and_the_catalogue(synced):
    archive, _, (_, second) = synced
    last = audit.latest_checkpoint(archive).tree_size
    tamper(archive, ("DELETE FROM audit_entries WHERE idx = ?", [last - 1]),
           ("DELETE FROM audit_checkpoints WHERE tree_size = ?", [last]),
           ("DELETE FROM audit_nodes WHERE idx >= ? AND level = 0", [last - 1]))
    out = cli(archive, "audit", "verify")
    assert out.returncode == 1
    assert f"CheckpointMismatch receipt of bundle {second[:12]}: signed for {last} entries, " \
           f"but the log holds {last - 1}" in out.stdout
    assert f"NotInLog bundle {second[:12]}" in cli(archive, "verify").stdout


def test_an_entry_slipped_in_without_a_checkpoint_is_detected(synced):
    archive, *_ = synced
    size = audit.latest_checkpoint(archive).tree_size
    forged = canonical_bytes({"format": audit.FORMAT, "seq": size, "at": "2026-01-01T00:00:00.000Z",
                              "event": "station.register", "by": "local:root", "station_id": "st-x"})
    tamper(archive, ("INSERT INTO audit_entries VALUES (?, 'station.register', 'st-x', ?)", [size, forged]))
    out = cli(archive, "audit", "verify").stdout
    assert f"UnsignedEntries audit entries #{size}…#{size}" in out


def test_history_rewritten_with_the_central_key_is_caught_by_the_station(tmp_path, synced):
    archive, st, (first, second) = synced
    held = receipt_of(st, second)

    # The worst case: someone with the database and the key rebuilds the log with one entry
    # changed and re-signs every checkpoint. The log is consistent with itself again...
    index = ingest_index(archive, first)
    rows = archive.catalogue.query("SELECT idx, entry FROM audit_entries ORDER BY idx")
    entries = [bytes(r["entry"]) for r in rows]
    body = json.loads(entries[index])
    body["item"] = "1-2"
    entries[index] = canonical_bytes(body)
    tree = merkle.MemoryTree([merkle.leaf_hash(e) for e in entries])
    key = keys.load_key_file(archive.config.key_path)
    statements = [("DELETE FROM audit_nodes",), ("DELETE FROM audit_checkpoints",),
                  ("UPDATE audit_entries SET entry = ? WHERE idx = ?", [entries[index], index])]
    for level in range(tree.size.bit_length()):
        for i in range(tree.size >> level):
            statements.append(("INSERT INTO audit_nodes VALUES (?, ?, ?)", [level, i, tree.perfect(level, i)]))
    for size in range(1, tree.size + 1):
        cp = checkpoint_format.sign(key, size, tree.root(size), "2026-11-21T00:00:00.000Z")
        statements.append(("INSERT INTO audit_checkpoints VALUES (?, ?, ?)",
                           [size, canonical_bytes(cp.body), cp.signature]))
    tamper(archive, *statements)

    # ... but the checkpoint the station kept from its receipt is not in that history,
    witness = tmp_path / "witness.json"
    witness.write_text(json.dumps(held["audit"]["checkpoint"]))
    out = cli(archive, "audit", "verify", "--checkpoint", witness).stdout
    assert f"CheckpointMismatch checkpoint file {witness}" in out
    # and the next receipt the station gets cannot prove the new log extends the one it holds.
    third = scan_item(st, "9-2-1")
    assert sync(st).committed == [third]
    with pytest.raises(HistoryRewritten, match="history was rewritten"):
        receipt.check_history(held, receipt_of(st, third), archive.public_key)


def test_station_registration_is_logged_once(tmp_path, central):
    archive, _ = central
    st = make_station(tmp_path / "st", station_id="st-reg")
    for _ in range(2):
        cli(archive, "stations", "add", "st-reg", "--key", st.public_key.hex(), "--unit", "unit-a", check=True)
    registered = [e for e in audit.entries(archive) if e["event"] == "station.register"]
    assert [(e["station_id"], e["unit"], e["key"]) for e in registered] == [
        ("st-reg", "unit-a", keys.fingerprint(st.public_key))]
    listed = [json.loads(line) for line in cli(archive, "audit", "ls", "--json", check=True).stdout.splitlines()]
    assert [e["event"] for e in listed] == ["profile.pin", "profile.default", "station.register"]
    st.close()


class CountingStatements:
    """A transaction's database that notes every statement it is given."""

    def __init__(self, db):
        self.db, self.statements = db, []

    def execute(self, sql, *args, **kwargs):
        self.statements.append(sql)
        return self.db.execute(sql, *args, **kwargs)


def test_an_append_and_a_proof_read_the_tree_once_however_large_the_log(archive):
    # An append needs only the complete subtrees that tile the log (its frontier): at 50 stations on
    # PostgreSQL one query per node was ~9 reads an append, each a round trip under the writer lock.
    reads = []
    for n in range(23):
        with archive.catalogue.transaction() as db:
            counting = CountingStatements(db)
            index, cp = audit.record(counting, archive, "test.append", f"s{n}", {"n": n}, by="test")
        reads.append(sum("FROM audit_nodes" in sql for sql in counting.statements))
    stored = audit_log.entries(archive.catalogue)
    tree = merkle.MemoryTree([merkle.leaf_hash(bytes(e["entry"])) for e in stored])
    assert cp.body["tree_size"] == index + 1 == tree.size
    assert cp.body["root_hash"] == tree.root().hex()
    assert max(reads) == 1, f"audit node reads per append: {reads}"
    with archive.catalogue.transaction() as db:
        counting = CountingStatements(db)
        inclusion = audit_log.inclusion_proof(counting, 5, 21)
        consistency = audit_log.consistency_proof(counting, 13, 23)
    assert sum("FROM audit_nodes" in sql for sql in counting.statements) == 2  # one a proof
    assert merkle.verify_inclusion(tree.perfect(0, 5), 5, 21, inclusion, tree.root(21))
    assert merkle.verify_consistency(13, 23, tree.root(13), tree.root(23), consistency)
    assert cli(archive, "audit", "verify").returncode == 0
