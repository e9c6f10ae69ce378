"""Bundles that break their unit's profile are quarantined, and the station is told every reason.

Through the real path: a registered station seals the pages into its outbox and syncs over
gRPC; the operator reads the quarantine with the CLI. Pages are made to break one rule each.
A page count that differs from the pages listed is no profile rule: the signed-manifest contract
refuses it before anything is uploaded.
"""

import json

import google_crc32c
import pytest

from central import audit, profile
from central.verify import verify
from station import outbox
from station.scan import scan
from station.sync import sync
from tests.central.test_standards import SEAL_FOUND, page
from tests.conftest import make_station, register, cli_in_process


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param

STRICT = ('format = "quire.profile/1"\nname = "strict"\nversion = 2\ntitle = "JPEG only, no category 10"\n'
          'extends = "gbt33870"\n[files]\nallowed_media_types = ["image/jpeg"]\n[catalogue]\n'
          'categories = ["1", "2", "3", "4-1", "4-2", "4-3", "4-4", "5", "6", "7", "8", "9-1", "9-2", "9-3", "9-4"]\n')
RULES = ("BelowResolution", "EffectiveResolution", "ColourRequired", "ColourModeNotAllowed", "FormatNotAllowed",
         "MixedFormats", "DpiNotInFile", "HeaderMismatch", "UnreadableImage", "ResidualSkew", "InvalidCategory",
         "ArchiveNumberPattern", "MissingMetadata")


@pytest.fixture
def pair(tmp_path, central):
    """Station 'st-test' in unit-a (gbt33870) and 'st-strict' in unit-strict (a local profile)."""
    archive, address = central
    (archive.config.home / "profiles" / "strict.toml").write_text(STRICT)
    profile.assign(archive, "unit-a", "gbt33870")
    profile.assign(archive, "unit-strict", "strict")
    st = register(archive, address, make_station(tmp_path / "st", address))
    strict = register(archive, address, make_station(tmp_path / "strict", address, station_id="st-strict"),
                      unit="unit-strict")
    yield archive, st, strict
    st.close()
    strict.close()


def seal(station, pages, item, archive_no="D-0001", operator="op") -> str:
    """Store crafted pages as one batch and seal it into the station's outbox, as a scan would."""
    batch = station.store.open_batch({"archive_no": archive_no, "name": "王五"}, {"item": item, "title": "履历"},
                                     "test", operator)
    for n, p in enumerate(pages, 1):
        station.store.add_page(batch.id, n, p)
    return outbox.seal_batch(station.store, batch.id, station.station_id, station.key)


def named(message: str) -> set[str]:
    return {rule for rule in RULES if rule in message}


def test_each_rule_quarantines_its_bundle_and_the_station_is_told_it(tmp_path, pair):
    archive, st, strict = pair
    cases = {  # rule → (station, pages, item, archive_no, operator)
        "BelowResolution": (st, [page(dpi=150)], "1-1", "D-0001", "op"),
        "EffectiveResolution": (st, [page(extent_mm=[12.0, 14.4])], "1-2", "D-0001", "op"),
        "ColourRequired": (st, [page(colour_evidence=SEAL_FOUND)], "1-3", "D-0001", "op"),
        "ColourModeNotAllowed": (st, [page(colour="bilevel", media_type="image/tiff")], "1-4", "D-0001", "op"),
        "MixedFormats": (st, [page(), page(media_type="image/tiff")], "1-5", "D-0001", "op"),
        "DpiNotInFile": (st, [page(file_dpi=72)], "1-6", "D-0001", "op"),
        "HeaderMismatch": (st, [page(claimed_size=(121, 170))], "1-7", "D-0001", "op"),
        "UnreadableImage": (st, [page(data=b"not a picture at all")], "1-8", "D-0001", "op"),
        "ResidualSkew": (st, [page(skew_deg=1.6, rotation_deg=0.0)], "1-9", "D-0001", "op"),
        "ArchiveNumberPattern": (st, [page()], "1-1", "D 0002", "op"),
        "MissingMetadata": (st, [page()], "1-10", "D-0001", ""),
        "FormatNotAllowed": (strict, [page(media_type="image/tiff")], "2-1", "D-0003", "op"),
        "InvalidCategory": (strict, [page()], "10-1", "D-0003", "op"),
    }
    bundles = {rule: seal(station, pages, item, no, op) for rule, (station, pages, item, no, op) in cases.items()}
    told = {**sync(st).rejected, **sync(strict).rejected}
    assert {rule: named(told.get(bid, "")) for rule, bid in bundles.items()} == {rule: {rule} for rule in cases}
    for rule, bid in bundles.items():
        assert outbox.get(cases[rule][0].store, bid)["state"] == "rejected"
    assert "standards profile gbt33870 v3 not met" in told[bundles["BelowResolution"]]
    assert "standards profile strict v2 not met" in told[bundles["InvalidCategory"]]

    assert archive.catalogue.one("SELECT COUNT(*) AS n FROM materials")["n"] == 0
    held = [json.loads(line) for line in cli_in_process("quire-central", "--home", archive.config.home,
                                                        "quarantine", "ls", "--json").stdout.splitlines()]
    assert {row["bundle_id"]: row["rules"] for row in held} == {bid: rule for rule, bid in bundles.items()}
    # Quarantined, not discarded: every page file the stations sent is kept.
    for rule, (station, pages, *_) in cases.items():
        manifest = json.loads(outbox.get(station.store, bundles[rule])["manifest"])
        assert all(archive.blobs.has(p["sha256"]) for p in manifest["pages"])
    assert verify(archive).ok  # a quarantine is the archive working, not damage


def test_a_bundle_breaking_several_rules_is_told_all_of_them(pair):
    archive, st, _ = pair
    pages = [page(dpi=150, file_dpi=96, colour_evidence=SEAL_FOUND, skew_deg=2.0, rotation_deg=0.0),
             page(colour="bilevel", media_type="image/tiff", claimed_size=(100, 100))]
    bid = seal(st, pages, "4-1-1", archive_no="档号 1", operator="")
    expected = {"BelowResolution", "DpiNotInFile", "ColourRequired", "ResidualSkew", "ColourModeNotAllowed",
                "HeaderMismatch", "MixedFormats", "ArchiveNumberPattern", "MissingMetadata"}
    assert named(sync(st).rejected[bid]) == expected
    show = cli_in_process("quire-central", "--home", archive.config.home, "quarantine", "show", bid[:10]).stdout
    assert named(show) == expected
    assert "reject BelowResolution page 1: scanned at 150 dpi, the profile's minimum is 300 dpi" in show
    assert "reject HeaderMismatch page 2: the manifest says pixel size 100×100, the stored file is 120×170" in show
    assert "profile          gbt33870" in show
    entry = [e for e in audit.entries(archive) if e["event"] == "quarantine"][-1]
    assert entry["bundle_id"] == bid and set(entry["rules"]) == expected and entry["profile"] == "gbt33870 v3"


def test_a_real_scan_below_the_units_profile_is_quarantined_then_accepted_elsewhere(tmp_path, central):
    archive, address = central
    home = archive.config.home
    cli_in_process("quire-central", "--home", home, "profiles", "assign", "unit-a", "gbt33870")
    cli_in_process("quire-central", "--home", home, "profiles", "assign", "unit-b", "dat31")
    ls = cli_in_process("quire-central", "--home", home, "profiles", "ls").stdout
    assert "unit-a" in ls.splitlines()[[l.split()[0] for l in ls.splitlines()].index("gbt33870")]
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    result = scan(st, {"archive_no": "D-0001"}, {"item": "1-1", "title": "履历"}, "synthetic:seed=1,sheets=1")
    reason = sync(st).rejected[result.bundle_id]
    assert "BelowResolution pages 1-2: scanned at 150 dpi, the profile's minimum is 300 dpi" in reason
    assert cli_in_process("quire-central", "--home", home, "quarantine", "ls").stdout.count("BelowResolution") == 1
    st.close()

    # 200 dpi meets DA/T 31, the profile of unit-b.
    other = register(archive, address, make_station(tmp_path / "st2", address, station_id="st-b", dpi=200),
                     unit="unit-b")
    result = scan(other, {"archive_no": "D-0002"}, {"item": "1-1", "title": "履历"}, "synthetic:seed=1,sheets=1")
    assert sync(other).committed == [result.bundle_id]
    body = json.loads(outbox.get(other.store, result.bundle_id)["receipt"])
    assert body["standards"]["profile"] == "dat31"
    other.close()


def test_an_accepted_bundle_carries_its_warnings_on_the_receipt(pair):
    _, st, _ = pair
    bid = seal(st, [page(skew_deg=0.8, rotation_deg=0.0)], "1-1")
    assert sync(st).committed == [bid]
    body = json.loads(outbox.get(st.store, bid)["receipt"])
    assert body["standards"] == {"profile": "gbt33870", "version": 3, "sha256": profile.load("gbt33870").sha256,
                                 "warnings": ["ResidualSkew page 1: 0.80° of skew left after processing, limit 0.5°"]}


def test_quarantine_show_says_what_to_do_for_an_unknown_bundle(central):
    archive, _ = central
    proc = cli_in_process("quire-central", "--home", archive.config.home, "quarantine", "show", "abcdef12", check=False)
    assert proc.returncode == 1 and "quarantine ls' lists them" in proc.stderr


def test_a_unit_whose_profile_is_gone_keeps_its_bundles_queued(tmp_path, central):
    archive, address = central
    (archive.config.home / "profiles" / "strict.toml").write_text(STRICT)
    profile.assign(archive, "unit-strict", "strict")
    st = register(archive, address, make_station(tmp_path / "st", address, sync_retry_span_s=0), unit="unit-strict")
    bid = seal(st, [page()], "1-1")
    (archive.config.home / "profiles" / "strict.toml").unlink()
    report = sync(st)
    assert bid in report.failed and "no standards profile 'strict'" in report.failed[bid]
    assert outbox.get(st.store, bid)["state"] in outbox.PENDING  # the archive's fault: retried later
    assert archive.catalogue.query("SELECT * FROM quarantine") == []
    st.close()


def test_two_commits_of_one_bundle_at_once_catalogue_it_once(tmp_path, archive):
    import threading

    from central import ingest, stations
    from quire.v1 import sync_pb2

    st = make_station(tmp_path / "st")
    stations.add(archive, st.station_id, st.public_key.hex(), "unit-a")
    bid = seal(st, [page(), page()], "1-1")
    row = outbox.get(st.store, bid)
    ingest.offer(archive, st.station_id, row["manifest"], row["signature"])
    for p in json.loads(row["manifest"])["pages"]:
        data = st.store.page_path(p["sha256"], p["media_type"]).read_bytes()
        ingest.write(archive, iter([sync_pb2.WriteRequest(station_id=st.station_id, bundle_id=bid, sha256=p["sha256"],
                                                          data=data, finish_write=True,
                                                          data_crc32c=google_crc32c.value(data))]))
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(ingest.commit(archive, st.station_id, bid)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 4 and len(set(answers)) == 1  # one receipt, answered to every caller
    assert archive.catalogue.query("SELECT * FROM quarantine") == []
    assert [e["event"] for e in audit.entries(archive)].count("ingest") == 1
    assert verify(archive).ok
    st.close()
