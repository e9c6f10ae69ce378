"""quire-station process loses nothing: distinct inputs never share an output, --dpi is a usage error unless a
whole scan resolution and overrides what a file claims, and a scanned PDF is taken page by page."""

import json

import pytest
from PIL import Image

from station.capture.synthetic import render_page
from tests.conftest import run_cli


def _page(path, dpi=150, index=0):
    Image.fromarray(render_page(seed=9, index=index, dpi=150).image).save(path, dpi=(dpi, dpi))
    return path


def _process(tmp_path, *args, check=True):
    return run_cli("quire-station", "--home", tmp_path / "st", "process", *args, "--out", tmp_path / "out",
                   check=check)


def _records(proc):
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_two_inputs_of_the_same_name_are_refused_naming_both_before_anything_is_written(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first, second = _page(tmp_path / "a" / "p1.jpg"), _page(tmp_path / "b" / "p1.jpg", index=1)
    proc = _process(tmp_path, first, second, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"quire-station: {first} and {second} would both be written as p1 in the --out directory, "
                           "one over the other; nothing was processed — process them in separate runs with "
                           "different --out directories, or rename one\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given, said", [
    ("0", "0 dpi is not a scan resolution; give 50–2400"),
    ("-300", "-300 dpi is not a scan resolution; give 50–2400"),
    ("300.5", "'300.5' is not a whole number of dots per inch, e.g. 300"),
])
def test_dpi_must_be_a_whole_scan_resolution(tmp_path, given, said):
    proc = _process(tmp_path, _page(tmp_path / "p.png"), f"--dpi={given}", check=False)
    assert proc.returncode == 2 and proc.stderr.endswith(f"quire-station process: error: argument --dpi: {said}\n")
    scan = run_cli("quire-station", "--home", tmp_path / "st", "scan", "--source", f"folder:{tmp_path}",
                   "--dossier", "D-1", "--material", "1-1", "--title", "x", f"--dpi={given}", check=False)
    assert scan.returncode == 2 and f"argument --dpi: {said}" in scan.stderr


def test_an_explicit_dpi_overrides_a_wrong_resolution_the_file_claims(tmp_path):
    wrong = _page(tmp_path / "scan.jpg", dpi=1200)   # scanned at 150 dpi, tagged 1200
    claimed = _records(_process(tmp_path, wrong))
    assert [(r["dpi"], r["dpi_source"]) for r in claimed] == [(1200, "file")]
    (record,) = _records(_process(tmp_path, wrong, "--dpi", "150"))
    assert (record["dpi"], record["dpi_source"]) == (150, "operator")
    with Image.open(record["output"]) as out:
        assert out.info["dpi"] == (150, 150)
    assert record["crop"] != claimed[0]["crop"]   # the margin kept is measured in mm: the dpi decides it


def test_a_scanned_pdf_is_processed_page_by_page_at_the_resolution_its_geometry_gives(tmp_path):
    pages = [Image.fromarray(render_page(seed=9, index=i, dpi=200).image) for i in range(2)]
    pdf = tmp_path / "dossier.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=200)   # page size = pixels ÷ 200 dpi
    records = _records(_process(tmp_path, pdf))
    assert [(r["input"], r["page"], r["dpi"], r["dpi_source"]) for r in records] == [
        (str(pdf), 1, 200, "file"), (str(pdf), 2, 200, "file")]
    assert [r["output"] for r in records] == [str(tmp_path / "out" / f"dossier-p{n}.jpg") for n in (1, 2)]

    run_cli("quire-station", "--home", tmp_path / "st", "init")
    folder = tmp_path / "feeder"
    folder.mkdir()
    pdf.rename(folder / pdf.name)
    _page(folder / "z-last.png", dpi=150)
    scanned = run_cli("quire-station", "--home", tmp_path / "st", "scan", "--source", f"folder:{folder}",
                      "--dossier", "D-1", "--material", "1-1", "--title", "履历表", "--json")
    assert [(r["n"], r["dpi"], r["dpi_source"]) for r in _records(scanned)] == [
        (1, 200, "file"), (2, 200, "file"), (3, 150, "file")]
    assert "3 pages, sealed as bundle" in scanned.stderr
