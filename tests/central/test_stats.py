"""Statistics of a real archive: stations in three units scan, sync and are inspected; one bundle is
quarantined. The numbers, tables, JSON lines and charts are what an archivist would look at."""

import json
import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from central import profile, qc, stats, users
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register, cli_in_process

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# station, unit, archive number, item, sheets, operator; unit-strict judges by gbt33870 (300 dpi minimum),
# so st-s's 150 dpi scan is quarantined.
SCANS = [("st-a1", "unit-a", "D-A1", "1-1", 1, "alice"),
         ("st-a1", "unit-a", "D-A1", "1-2", 2, "alice"),
         ("st-a2", "unit-a", "D-A2", "1-1", 1, "bob"),
         ("st-b", "甲单位", "D-B1", "1-1", 3, "carol"),
         ("st-s", "unit-strict", "D-S1", "1-1", 1, "dave")]


@pytest.fixture
def filled(tmp_path, central):
    """The archive after SCANS, QC of st-a1's first batch (accepted) and st-a2's (returned), and users."""
    archive, address = central
    profile.assign(archive, "unit-strict", "gbt33870")
    stations = {}
    for station_id, unit, *_ in SCANS:
        if station_id not in stations:
            stations[station_id] = register(archive, address, make_station(
                tmp_path / station_id, address, station_id=station_id, dpi=150), unit=unit)
    results = [(station_id, operator, scan(stations[station_id], {"archive_no": no, "name": "王五"},
                                           {"item": item, "title": "干部履历表"},
                                           f"synthetic:seed={i},sheets={sheets}", operator=operator))
               for i, (station_id, _, no, item, sheets, operator) in enumerate(SCANS, 1)]
    committed, rejected = [], {}
    for st in stations.values():
        report = sync(st)
        committed += report.committed
        rejected.update(report.rejected)
    tokens = {uid: users.add(archive, uid, name, [role], units) for uid, name, role, units in (
        ("adm", "Admin", "admin", ["*"]), ("ines", "Ines", "inspector", ["*"]), ("rita", "Rita", "reader", ["*"]),
        ("sofia", "Sofia", "security_officer", ["unit-a"]))}
    inspector = users.authenticate(archive, tokens["ines"])
    for (station_id, _, result), good in ((results[0], True), (results[2], False)):
        batch = qc.start(archive, inspector, result.bundle_id, random.Random(1))
        for n in batch["sample"]:
            qc.judge(archive, inspector, result.bundle_id, n, good, "" if good else "cut off at the bottom")
        qc.decide(archive, inspector, result.bundle_id)
    yield archive, results, committed, rejected, tokens
    for st in stations.values():
        st.close()


def central_cli(archive, token, *args, check=True):
    return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": token}, check=check)


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def scanned(results, key) -> dict:
    """Pages scanned per station or operator, counting only bundles the archive committed."""
    out = {}
    for station_id, operator, r in results:
        name = station_id if key == "station" else operator
        out[name] = out.get(name, 0) + r.total_pages
    return out


def test_pages_per_station_operator_and_unit_are_what_was_scanned(filled):
    archive, results, committed, rejected, _ = filled
    assert len(committed) == 4 and len(rejected) == 1
    ok = [(s, o, r) for s, o, r in results if r.bundle_id in committed]

    by_station = {r["station"]: r for r in stats.pages(archive, "station")}
    assert {k: r["pages"] for k, r in by_station.items()} == {**scanned(ok, "station"), "st-s": 0}
    assert by_station["st-a1"]["bundles"] == 2 and by_station["st-s"]["rejected"] == 1
    assert {r["operator"]: r["pages"] for r in stats.pages(archive, "operator")} == {**scanned(ok, "operator"),
                                                                                      "dave": 0}
    by_unit = {r["unit"]: (r["bundles"], r["pages"], r["rejected"]) for r in stats.pages(archive, "unit")}
    a = scanned(ok, "station")
    assert by_unit == {"unit-a": (3, a["st-a1"] + a["st-a2"], 0), "甲单位": (1, a["st-b"], 0), "unit-strict": (0, 0, 1)}
    assert stats.pages(archive, "day") == [{"day": today(), "bundles": 4, "pages": sum(a.values()), "rejected": 1}]
    daily = stats.pages(archive, "unit", daily=True)
    assert {(r["day"], r["unit"]) for r in daily} == {(today(), u) for u in by_unit}

    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert stats.pages(archive, "station", since=tomorrow) == []
    assert len(stats.pages(archive, "station", since=today(), until=today())) == 4
    assert stats.pages(archive, "unit", units=["unit-a"])[0]["unit"] == "unit-a"


def test_qc_pass_rate_rejection_reason_and_coverage(filled):
    archive, results, _, rejected, tokens = filled
    qc_rows = {r["unit"]: r for r in stats.qc(archive, "unit")}
    assert set(qc_rows) == {"unit-a"}
    assert qc_rows["unit-a"] | {"good_share": None} == {
        "unit": "unit-a", "batches": 2, "accepted": 1, "returned": 1, "sampling": 0, "pass_rate": 0.5,
        "good_share": None}
    assert qc_rows["unit-a"]["good_share"] == pytest.approx(0.5)
    assert {r["operator"]: r["pass_rate"] for r in stats.qc(archive, "operator")} == {"alice": 1.0, "bob": 0.0}

    [reason] = stats.rejections(archive)
    assert reason["rule"] == "BelowResolution" and reason["bundles"] == 1
    assert "150 dpi" in reason["example"] and reason["example"] in rejected[results[4][2].bundle_id]
    assert stats.rejections(archive, "station")[0]["station"] == "st-s"

    out = central_cli(archive, tokens["adm"], "stats", "units", "set-expected", "unit-a", "4").stdout
    assert "unit-a expects 4 dossiers" in out
    cov = {r["unit"]: r for r in stats.coverage(archive)}
    assert (cov["unit-a"]["covered"], cov["unit-a"]["expected"], cov["unit-a"]["coverage"]) == (2, 4, 0.5)
    assert (cov["甲单位"]["covered"], cov["甲单位"]["expected"], cov["甲单位"]["coverage"]) == (1, None, None)
    assert (cov["unit-strict"]["dossiers"], cov["unit-strict"]["covered"]) == (0, 0)

    table = central_cli(archive, tokens["adm"], "stats", "coverage").stdout.splitlines()
    assert table[0].split() == ["unit", "name", "dossiers", "covered", "expected", "coverage", "materials", "pages"]
    # unit-a has no separate name: dossiers, covered, expected, coverage follow the unit
    assert [line for line in table if line.startswith("unit-a ")][0].split()[1:6] == ["2", "2", "4", "50.0", "%"]
    assert "expected unknown" in [line for line in table if line.startswith("甲单位")][0]


def test_cli_tables_and_json_lines(filled):
    archive, results, committed, _, tokens = filled
    pages = scanned([(s, o, r) for s, o, r in results if r.bundle_id in committed], "station")
    rows = [json.loads(line) for line in central_cli(archive, tokens["ines"], "stats", "pages", "--by", "station",
                                                     "--json").stdout.splitlines()]
    assert {r["station"]: r["pages"] for r in rows} == {**pages, "st-s": 0}
    table = central_cli(archive, tokens["ines"], "stats", "pages", "--by", "station").stdout.splitlines()
    assert table[0].split() == ["station", "bundles", "pages", "rejected"]
    assert table[1].split() == ["st-a1", "2", str(pages["st-a1"]), "0"]
    assert table[-1].split() == ["total", "4", str(sum(pages.values())), "1"]

    qc_table = central_cli(archive, tokens["ines"], "stats", "qc", "--by", "operator").stdout
    assert [line.split() for line in qc_table.splitlines()][1][:6] == ["alice", "1", "1", "0", "0", "100.0"]
    rej = [json.loads(line) for line in central_cli(archive, tokens["ines"], "stats", "rejections", "--daily",
                                                    "--json").stdout.splitlines()]
    assert [(r["day"], r["rule"], r["bundles"]) for r in rej] == [(today(), "BelowResolution", 1)]
    assert central_cli(archive, tokens["ines"], "stats", "pages", "--since", "2099-01-01").stdout == "none\n"

    bad = central_cli(archive, tokens["ines"], "stats", "pages", "--since", "21.11.2026", check=False)
    assert bad.returncode == 1 and "write YYYY-MM-DD" in bad.stderr


def test_charts_are_written_as_png_and_svg(tmp_path, filled):
    archive, _, _, _, tokens = filled
    charts = {"pages-bar": ["pages", "--by", "operator"], "pages-line": ["pages", "--by", "unit", "--daily"],
              "qc": ["qc", "--by", "station"], "rejections": ["rejections"], "coverage": ["coverage"]}
    for name, args in charts.items():
        for ext in ("png", "svg"):
            path = tmp_path / f"{name}.{ext}"
            proc = central_cli(archive, tokens["adm"], "stats", *args, "--json", "--chart", path)
            [json.loads(line) for line in proc.stdout.splitlines()]  # the chart note goes to stderr
            data = path.read_bytes()
            assert len(data) > 5000, f"{path.name} is only {len(data)} bytes"
            if ext == "png":
                assert data.startswith(PNG_SIGNATURE)
            else:
                assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"
    svg = (tmp_path / "pages-line.svg").read_text()
    assert "<!-- 甲单位 -->" in svg and f"<!-- {today()} -->" in svg  # the legend and a day on the axis
    if stats.cjk_font() == "WenQuanYi Micro Hei":  # drawn with glyphs of the font, not as empty boxes
        assert 'id="WenQuanYiMicroHei-' in svg
    wrong = central_cli(archive, tokens["adm"], "stats", "pages", "--chart", tmp_path / "x.jpg", check=False)
    assert wrong.returncode == 1 and "must end in .png or .svg" in wrong.stderr


def test_stats_need_permission_and_stay_within_ones_units(filled):
    archive, _, _, _, tokens = filled
    refused = central_cli(archive, tokens["rita"], "stats", "pages", check=False)
    assert refused.returncode == 77 and "may not stats read" in refused.stderr and not refused.stdout
    no_admin = central_cli(archive, tokens["ines"], "stats", "units", "set-expected", "unit-a", "9", check=False)
    assert no_admin.returncode == 77
    assert archive.catalogue.one("SELECT COUNT(*) AS n FROM units")["n"] == 0
    rows = [json.loads(line) for line in central_cli(archive, tokens["sofia"], "stats", "pages", "--by", "unit",
                                                     "--json").stdout.splitlines()]
    assert [r["unit"] for r in rows] == ["unit-a"]
