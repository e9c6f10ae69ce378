"""Files a station is fed from outside the scanner: each is judged from its headers before a pixel is
decoded — a decompression bomb, a page no scanner makes, a named pipe, an absurd resolution — and
refused naming the file and what to do, never with a traceback, a hang, or the station's memory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from station.capture.synthetic import render_page
from tests.conftest import run_cli

MEMORY_LIMIT = 1_500_000_000   # a Pi-sized station: 1.5 GB of address space for the whole process


def _limited(home, *args) -> subprocess.CompletedProcess:
    """quire-station under a real address-space limit (prlimit), as the unit's MemoryMax would hold it."""
    return subprocess.run(["prlimit", f"--as={MEMORY_LIMIT}", str(Path(sys.executable).parent / "quire-station"),
                           "--home", str(home), *map(str, args)], capture_output=True, text=True, timeout=120)


def _page(path: Path, dpi: int | None = 150, index: int = 0) -> Path:
    image = Image.fromarray(render_page(seed=7, index=index, dpi=150).image)
    image.save(path, **({"dpi": (dpi, dpi)} if dpi else {}))
    return path


@pytest.fixture
def bombs(tmp_path):
    """Two PNGs of a few hundred KB: 12000×12000 colour (2.5 GB to process) and 50000×50000."""
    folder = tmp_path / "bombs"
    folder.mkdir()
    Image.new("RGB", (12000, 12000), "white").save(folder / "b12k.png")
    Image.new("1", (50000, 50000), 1).save(folder / "b50k.png")
    assert all(p.stat().st_size < 1_000_000 for p in folder.iterdir())
    return folder


def test_a_decompression_bomb_is_refused_from_its_header_within_the_memory_limit(tmp_path, bombs):
    home = tmp_path / "station"
    run_cli("quire-station", "--home", home, "init", "--id", "st-bomb")
    proc = _limited(home, "process", bombs / "b12k.png", bombs / "b50k.png", "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert (f"{bombs / 'b12k.png'}: the image is 12000×12000 pixels, 1016×1016 mm at 300 dpi (assumed), larger "
            "than any page a scanner makes (the largest sheet is A3, 297×420 mm, at 300 dpi); it was not decoded "
            "— remove it from the import, or if it was scanned at a higher resolution, give that with --dpi N; "
            "skipped") in proc.stderr
    assert f"{bombs / 'b50k.png'}: the image is more than" in proc.stderr
    assert "larger than any page a scanner makes (the largest sheet is A3 at 2400 dpi)" in proc.stderr
    assert not any((tmp_path / "out").iterdir())

    # The same files in a folder import, beside a good page: refused before any page is captured.
    _page(bombs / "a-good.png")
    scanned = _limited(home, "scan", "--source", f"folder:{bombs}", "--dossier", "D-1", "--material", "1-1",
                       "--title", "履历表")
    assert scanned.returncode == 2, scanned.stderr
    assert "Traceback" not in scanned.stderr and "b12k.png: the image is 12000×12000 pixels" in scanned.stderr
    status = run_cli("quire-station", "--home", home, "status").stdout
    assert "outbox: 0 waiting, 0 committed" in status and "batch D-1" not in status


def test_an_image_too_small_or_too_long_for_a_page_is_refused_by_name(tmp_path):
    Image.new("RGB", (10, 10), "white").save(tmp_path / "tiny.png")
    Image.new("L", (100000, 16), 255).save(tmp_path / "strip.png")
    proc = run_cli("quire-station", "--home", tmp_path / "st", "process", tmp_path / "tiny.png",
                   tmp_path / "strip.png", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"{tmp_path / 'tiny.png'}: an image of 10×10 pixels is too small to be a scanned page (at least 16 "
            "pixels a side) — remove it from the import; skipped") in proc.stderr
    assert f"{tmp_path / 'strip.png'}: the image is 100000×16 pixels, 8467×1 mm at 300 dpi" in proc.stderr
    assert not any((tmp_path / "out").iterdir())


def test_out_naming_an_existing_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    proc = run_cli("quire-station", "--home", tmp_path / "st", "process", _page(tmp_path / "p.png"),
                   "--out", tmp_path / "taken", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"quire-station: --out {tmp_path / 'taken'} is a file; name a directory for the "
                           "processed pages (created if missing)\n")


def test_a_named_pipe_is_never_opened_and_never_blocks(tmp_path):
    folder = tmp_path / "feeder"
    folder.mkdir()
    _page(folder / "p1.png")
    os.mkfifo(folder / "p.jpg")
    proc = run_cli("quire-station", "--home", tmp_path / "st", "process", folder / "p.jpg", "--out", tmp_path / "out",
                   check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"{folder / 'p.jpg'}: not a regular file (a named pipe, device or folder); only page files can be "
            "imported — remove it or name the image file itself; skipped") in proc.stderr
    run_cli("quire-station", "--home", tmp_path / "st", "init")
    scanned = run_cli("quire-station", "--home", tmp_path / "st", "scan", "--source", f"folder:{folder}",
                      "--dossier", "D-1", "--material", "1-1", "--title", "x", check=False)
    assert scanned.returncode == 2 and f"{folder / 'p.jpg'}: not a regular file" in scanned.stderr


@pytest.mark.parametrize("name, stated, shown", [
    ("phys.png", 109092169, 109092169),     # a PNG pHYs of 4 294 967 295 px/m
    ("huge.tif", 4294967295, 4294967295),   # a TIFF XResolution of 2³² - 1
    ("low.png", 1.524, 2),                  # a PNG pHYs of 60 px/m
])
def test_an_absurd_resolution_in_the_file_is_refused_and_an_operators_accepted(tmp_path, name, stated, shown):
    path = tmp_path / name
    Image.fromarray(render_page(seed=7, index=0, dpi=150).image).save(path, dpi=(stated, stated))
    proc = run_cli("quire-station", "--home", tmp_path / "st", "process", path, "--out", tmp_path / "out",
                   check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"{path}: the file states {shown} dpi, outside the 50–2400 dpi a scanner produces, so its resolution "
            "tag is wrong — measure the page (pixels ÷ its size in inches) and give that with --dpi N, which "
            "overrides the file's; skipped") in proc.stderr
    assert not any((tmp_path / "out").iterdir())
    measured = run_cli("quire-station", "--home", tmp_path / "st", "process", path, "--out", tmp_path / "out",
                       "--dpi", "150")
    assert '"dpi": 150, "dpi_source": "operator"' in measured.stdout
