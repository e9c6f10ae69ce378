"""Folder import: each page's resolution comes from its file, or the operator, or is assumed — and said so."""

import json

from PIL import Image

from station.capture.synthetic import render_page
from tests.conftest import cli_in_process


def _feeder(tmp_path):
    """page1 states 150 dpi in its file; page2 states none (another device's export)."""
    folder = tmp_path / "feeder"
    folder.mkdir()
    Image.fromarray(render_page(seed=2, index=0, dpi=150).image).save(folder / "page1.jpg", dpi=(150, 150))
    Image.fromarray(render_page(seed=2, index=2, dpi=150).image).save(folder / "page2.jpg")
    return folder


def _scan(home, folder, item, *extra):
    return cli_in_process("quire-station", "--home", home, "scan", "--source", f"folder:{folder}", "--dossier", "D-1",
                          "--material", item, "--title", "履历表", "--json", *extra)


def test_a_folder_scan_warns_for_each_page_whose_resolution_is_assumed(tmp_path):
    home, folder = tmp_path / "station", _feeder(tmp_path)
    cli_in_process("quire-station", "--home", home, "init", "--id", "st-folder")
    proc = _scan(home, folder, "1-1")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["n"], r["dpi"], r["dpi_source"]) for r in records] == [(1, 150, "file"), (2, 300, "assumed")]
    assert [line for line in proc.stderr.splitlines() if "warning" in line] == [
        "quire-station: warning: page 2: its file states no resolution, so 300 dpi is assumed (recorded as "
        "assumed; a profile requiring a measured resolution refuses it) — measure it and scan with --dpi N"]

    measured = _scan(home, folder, "1-2", "--dpi", "150")
    # The operator's measurement overrides what the files state (a file may state a wrong resolution).
    assert [(r["dpi"], r["dpi_source"]) for r in map(json.loads, measured.stdout.splitlines())] == [
        (150, "operator"), (150, "operator")]
    assert "warning" not in measured.stderr


def test_dpi_without_a_source_is_refused_with_what_to_do(tmp_path):
    home = tmp_path / "station"
    cli_in_process("quire-station", "--home", home, "init")
    proc = cli_in_process("quire-station", "--home", home, "scan", "--dossier", "D-1", "--material", "1-1", "--title", "x",
                          "--dpi", "400", check=False)
    assert proc.returncode == 2 and "--dpi needs --source" in proc.stderr and "Traceback" not in proc.stderr


def test_a_spooled_page_keeps_where_its_resolution_came_from(tmp_path):
    # What a scan killed between capture and storage leaves behind, and the next scan recovers from.
    from station.capture.folder import FolderSource
    from station.spool import Spool

    spool = Spool(tmp_path / "station.db", tmp_path / "spool")
    try:
        spool.put("b1", 1, list(FolderSource(_feeder(tmp_path)).pages()))
        assert [spool.load("b1", n).dpi_source for n in (1, 2)] == ["file", "assumed"]
    finally:
        spool.close()


def test_a_folder_import_stopped_half_way_resumes_at_the_next_file_not_the_first(tmp_path):
    """Pages 1-2 stored, then the import stops (a fault on page 3): the same import again takes files 3-5."""
    folder = tmp_path / "feeder"
    folder.mkdir()
    for n in range(1, 6):
        Image.fromarray(render_page(seed=n, index=0, dpi=150).image).save(folder / f"p{n}.jpg", dpi=(150, 150))
    home = tmp_path / "station"
    cli_in_process("quire-station", "--home", home, "init", "--id", "st-folder")
    args = ("--dossier", "D-1", "--material", "1-1", "--title", "履历表", "--json")
    stopped = cli_in_process("quire-station", "--home", home, "scan", "--source", f"fault:jam@3:folder:{folder}", *args,
                             check=False)
    assert stopped.returncode != 0 and "page 3" in stopped.stderr
    resumed = cli_in_process("quire-station", "--home", home, "scan", "--source", f"folder:{folder}", *args)
    status = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)
    (bundle,) = status["bundles"]
    assert bundle["pages"] == 5
    records = [json.loads(line) for line in stopped.stdout.splitlines() + resumed.stdout.splitlines()]
    assert [r["n"] for r in records] == [1, 2, 3, 4, 5]
    assert len({(r["bytes"], tuple(r["crop"])) for r in records}) == 5   # five different files, none twice
