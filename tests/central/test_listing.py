"""A dossier's listing (`quire-central ls D-…`) names each material's bundle and the station that sent it
— after a replacement from another station, and in an archive catalogued before the station was kept on
the material (migration 0015), once it is opened by this version."""

import hashlib
import json

import pytest

from central.store import bundles, materials
from central.store import dossiers as store_dossiers
from central.store import stations as store_stations
from tests.conftest import behind_the_archive, cli_in_process

COLUMNS = ["item", "title", "date_formed", "page_count", "bundle_id", "station_id", "catalogued_at"]


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


def _offer(db, station_id: str, item: str, title: str) -> str:
    manifest = json.dumps({"station_id": station_id, "batch": {"operator": "op"}, "dossier": {"archive_no": "D-1"},
                           "material": {"item": item, "title": title}, "pages": []}).encode()
    bundle_id = hashlib.sha256(manifest).hexdigest()
    bundles.add_offered(db, bundle_id, station_id, manifest, b"s" * 64, "2026-01-03T00:00:00.000Z")
    bundles.mark_committed(db, bundle_id, "2026-01-03T00:00:01.000Z", b"receipt", b"r" * 64)
    return bundle_id


def _fields(title: str, bundle_id: str, at: str) -> dict:
    return {"title": title, "date_formed": "2001-05", "page_count": 0, "remarks": None, "bundle_id": bundle_id,
            "catalogued_at": at}


def _catalogue(archive) -> dict[str, str]:
    """D-1 of unit-a with 1-1 from st-a and 4-1-2 from st-b, catalogued through the store (no pages)."""
    with archive.catalogue.transaction() as db:
        for station_id, key in (("st-a", b"a"), ("st-b", b"b")):
            store_stations.add(db, station_id, key * 32, "unit-a", "2026-01-01T00:00:00.000Z")
        store_dossiers.add(db, "D-1", "unit-a", {"name": "张三"}, "2026-01-02T00:00:00.000Z")
        made = {"1-1": _offer(db, "st-a", "1-1", "履历表"), "4-1-2": _offer(db, "st-b", "4-1-2", "考核")}
        materials.add(db, "D-1", "1-1", "1", _fields("履历表", made["1-1"], "2026-01-03T00:00:01.000Z"))
        materials.add(db, "D-1", "4-1-2", "4-1", _fields("考核", made["4-1-2"], "2026-01-03T00:00:02.000Z"))
    return made


def _listed(archive) -> list[dict]:
    out = cli_in_process("quire-central", "--home", archive.config.home, "ls", "D-1", "--json").stdout
    found = [json.loads(line) for line in out.splitlines()]
    assert all(list(row) == COLUMNS for row in found), found
    return found


def test_the_listing_names_each_materials_bundle_and_station_also_after_a_replacement_from_another(archive):
    made = _catalogue(archive)
    assert _listed(archive) == [
        {"item": "1-1", "title": "履历表", "date_formed": "2001-05", "page_count": 0, "bundle_id": made["1-1"],
         "station_id": "st-a", "catalogued_at": "2026-01-03T00:00:01.000Z"},
        {"item": "4-1-2", "title": "考核", "date_formed": "2001-05", "page_count": 0, "bundle_id": made["4-1-2"],
         "station_id": "st-b", "catalogued_at": "2026-01-03T00:00:02.000Z"}]
    # 1-1 rescanned on the unit's other station: its new version is listed with that station.
    with archive.catalogue.transaction() as db:
        rescan = _offer(db, "st-b", "1-1", "履历表（重扫）")
        material_id = materials.get(db, "D-1", "1-1")["id"]
        materials.replace(db, material_id, _fields("履历表（重扫）", rescan, "2026-01-04T00:00:00.000Z"))
    first = _listed(archive)[0]
    assert (first["title"], first["bundle_id"], first["station_id"]) == ("履历表（重扫）", rescan, "st-b")


def test_an_archive_catalogued_before_0015_lists_its_stations_once_upgraded(archive):
    made = _catalogue(archive)
    archive.close()
    # The catalogue as the release before kept it: no station on the material, migration 0015 not applied.
    with behind_the_archive(archive) as raw:
        raw.execute("ALTER TABLE materials DROP COLUMN station_id")
        raw.execute("DELETE FROM _migrations WHERE name = '0015_material_station'")
    listed = _listed(archive)   # the CLI opens the archive: its migrations run
    assert [(r["item"], r["bundle_id"], r["station_id"]) for r in listed] == [
        ("1-1", made["1-1"], "st-a"), ("4-1-2", made["4-1-2"], "st-b")]
