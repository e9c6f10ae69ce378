"""A profile that keeps preservation masters: the untouched capture travels in the bundle beside the
processed page, signed in its manifest, synced, stored and verified by the archive as pages are."""

import io
import json

import numpy as np
from PIL import Image

from central.verify import verify
from quire import manifest as manifest_format
from station.capture.synthetic import render_page
from station.pipeline import PipelineConfig, process_page
from station.purge import purge
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register


def test_the_master_is_the_capture_pixel_for_pixel_and_the_record_names_it():
    fed = render_page(5, 0, dpi=150, skew_deg=4.0, orientation=180)
    page = process_page(fed.image, 150, PipelineConfig(keep_master=True))
    master = Image.open(io.BytesIO(page.master))
    assert np.array_equal(np.asarray(master), fed.image)      # lossless, neither turned nor cropped
    assert round(master.info["dpi"][0]) == 150
    kept = page.record["master"]
    assert kept["bytes"] == len(page.master) and kept["media_type"] == "image/tiff"
    assert (kept["width_px"], kept["height_px"]) == (fed.image.shape[1], fed.image.shape[0])
    assert process_page(fed.image, 150).master is None and "master" not in process_page(fed.image, 150).record


def test_masters_are_synced_stored_and_verified_beside_their_pages(tmp_path, central):
    archive, address = central
    station = register(archive, address, make_station(tmp_path / "st", address, dpi=150,
                                                      pipeline={"keep_master": True}))
    try:
        result = scan(station, {"archive_no": "D-0009", "name": "李四"}, {"item": "1-1", "title": "履历"},
                      "synthetic:seed=3,sheets=1")
        report = sync(station)
        kept = [json.loads(p["record_json"])["master"] for p in station.store.pages(result.batch_id)]
        on_station = [station.store.page_path(m["sha256"], m["media_type"]).exists() for m in kept]
        purged = purge(station, retention_days=0)
        left = [station.store.page_path(m["sha256"], m["media_type"]).exists() for m in kept]
    finally:
        station.close()
    assert report.committed == [result.bundle_id]
    # The station held the masters until the archive's receipt, and frees their disk with the pages'.
    assert on_station == [True, True] and purged == (1, 4) and left == [False, False]
    manifest = json.loads(archive.catalogue.one("SELECT manifest FROM bundles WHERE id = ?",
                                                [result.bundle_id])["manifest"])
    masters = [p["record"]["master"] for p in manifest["pages"]]
    assert len(masters) == 2 and all(m["media_type"] == "image/tiff" for m in masters)
    stored = {row["sha256"] for row in archive.catalogue.query("SELECT sha256 FROM blobs")}
    assert {m["sha256"] for m in masters} <= stored
    assert {p["sha256"] for p in manifest_format.blobs(manifest)} == stored
    assert not verify(archive).problems
