"""The statistics dashboard in the browser: figures and tables from central.stats, charts drawn by the archive
as SVG (no script in them, none inline in the page), each person's units only; a reader is refused."""

import pytest

from central import qc, users
from station.scan import scan
from station.sync import sync

from .conftest import Client, entries, screenshot, sign_in

CHARTS = ("pages-day", "pages-station", "pages-operator", "qc-unit", "rejections", "coverage")


@pytest.fixture(scope="module")
def history(site):
    """One batch accepted at QC, one rescan held in quarantine, and an archivist of another unit."""
    inspector = users.enabled(site, "insp")[0]
    bundle = site.catalogue.one("SELECT bundle_id FROM materials WHERE archive_no = 'D-3'")["bundle_id"]
    for n in qc.start(site, inspector, bundle)["sample"]:
        qc.judge(site, inspector, bundle, n, True)
    assert qc.decide(site, inspector, bundle)["state"] == "accepted"
    scan(site.test_station, {"archive_no": "D-2"}, {"item": "1-1", "title": "干部履历表", "rescan": True},
         "synthetic:seed=50,sheets=1")
    assert sync(site.test_station).rejected
    users.add(site, "arch-b", "吴档案", ["archivist"], ["unit-b"])
    users.set_password(site, "arch-b", "口令-arch-b-2026!", by="local:tests", must_change=False)


def test_the_dashboard_shows_the_archives_figures_and_charts(site, history, console, contexts):
    page = sign_in(contexts(), console, "auditor")
    page.goto(console + "stats")
    assert "8" in page.inner_text("#figures div:has-text('入库页数')")
    assert "st-test" in page.inner_text("#by-station") and "CatalogueConflict" in page.inner_text("#rejection-rules")
    assert "100.0%" in page.inner_text("#qc-rates") and "unit-a" in page.inner_text("#coverage")
    for _ in range(300):
        loaded = page.locator("#charts img").evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0)"
                                                          ".length")
        if loaded == len(CHARTS):
            break
        page.wait_for_timeout(100)
    assert loaded == len(CHARTS)
    screenshot(page, "statistics")
    client = Client(console)
    client.sign_in("auditor")
    for name in CHARTS:
        status, headers, body = client.request(f"stats/{name}.svg?since=2020-01-01")
        assert status == 200 and headers["Content-Type"].startswith("image/svg+xml"), name
        assert headers["Cache-Control"] == "no-store" and b"<svg" in body and b"<script" not in body, name


def test_each_person_sees_their_units_and_a_reader_is_refused(site, history, console):
    other = Client(console)
    other.sign_in("arch-b", "口令-arch-b-2026!")
    status, _, body = other.request("stats")
    assert status == 200 and "st-test" not in body.decode()   # unit-b has scanned nothing
    reader = Client(console)
    reader.sign_in("wang")
    before = len(entries(site, "access.denied", by="user:wang"))
    for path in ("stats", "stats/coverage.svg"):
        assert reader.request(path)[0] == 403, path
    assert len(entries(site, "access.denied", by="user:wang")) == before + 2
    status, _, body = Client(console).request("stats?since=2026-13-01")
    assert status == 303   # no session: to the sign-in page first
    auditor = Client(console)
    auditor.sign_in("auditor")
    status, _, body = auditor.request("stats?since=2026-13-01")
    assert status == 400 and "not a day" in body.decode()
