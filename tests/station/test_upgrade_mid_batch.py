"""A station upgraded in the middle of a batch still seals and syncs it.

Pages stored before quire.bundle/2 carry records without the typed ``dpi_source`` and
``colour_evidence`` (the colour guard's measurements were never kept, so they cannot be filled in
honestly); such a batch is sealed as quire.bundle/1, which the archive still reads.
"""

import json

from station import config, outbox
from station.capture.synthetic import render_page
from station.home import open_station
from station.pipeline import process_page
from tests.conftest import make_station, register, run_cli

# What the station wrote before 8922257: the record without the fields quire.bundle/2 types.
ADDED_IN_2 = ("dpi_source", "colour_evidence")


def _old_style_batch(station, pages: int) -> None:
    """Pages 1..``pages`` of D-1 1-1 stored by the station as it was before the upgrade, then a kill."""
    batch = station.store.open_batch({"archive_no": "D-1"}, {"item": "1-1", "title": "履历表"},
                                     "synthetic:seed=4,sheets=2", "op")
    for n in range(1, pages + 1):
        raw = render_page(seed=4, index=n - 1, dpi=150)
        page = process_page(raw.image, 150)
        for key in ADDED_IN_2:
            del page.record[key]
        station.store.add_page(batch.id, n, page)
    station.store.interrupt(batch.id, "station upgraded")


def test_a_batch_begun_before_the_upgrade_is_sealed_as_version_1_and_synced(tmp_path, central):
    archive, address = central
    home = tmp_path / "station"
    station = register(archive, address, make_station(home, address, dpi=150, sync_retry_span_s=0))
    try:
        _old_style_batch(station, pages=2)
    finally:
        station.close()

    scanned = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-1", "--material", "1-1",
                      "--title", "履历表", "--source", "synthetic:seed=4,sheets=2", "--json", check=False)
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    assert "Traceback" not in scanned.stderr
    assert "4 pages (resumed at page 3), sealed as bundle" in scanned.stderr

    station = open_station(station.config)
    try:
        (bundle,) = outbox.pending(station.store)
        manifest = json.loads(bundle["manifest"])
    finally:
        station.close()
    assert manifest["format"] == "quire.bundle/1"
    assert [all(k in p["record"] for k in ADDED_IN_2) for p in manifest["pages"]] == [False, False, True, True]

    synced = run_cli("quire-station", "--home", home, "sync", "--central", address, check=False)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "committed 1 bundle(s), 4 pages" in synced.stdout
    listed = run_cli("quire-central", "--home", tmp_path / "central", "ls", "D-1", "1-1", "--json").stdout
    assert len(listed.splitlines()) == 4


def test_a_batch_stored_wholly_by_the_upgraded_station_is_sealed_as_version_2(tmp_path):
    home = tmp_path / "station"
    run_cli("quire-station", "--home", home, "init", "--id", "st-new")
    run_cli("quire-station", "--home", home, "scan", "--dossier", "D-2", "--material", "1-1", "--title", "自传",
            "--source", "synthetic:seed=5,sheets=1")
    station = open_station(config.load(home))
    try:
        (bundle,) = outbox.pending(station.store)
    finally:
        station.close()
    assert json.loads(bundle["manifest"])["format"] == "quire.bundle/2"
