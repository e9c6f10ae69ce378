"""A page far larger than a chunk goes through the real sync path in bounded memory on both sides.

The archive runs as `quire-central serve` and the station as `quire-station sync`, each its own
process, so their peak resident memory (VmHWM in /proc) is theirs alone: a sync of one small page
is the baseline, a sync of one 120 MB page must not raise either side's peak by more than 60 MB.
"""

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from central import config, stations
from central.archive import open_archive
from central.verify import verify
from station import config as station_config
from station import outbox
from station.enrol import enroll
from station.home import open_station
from station.pipeline import ProcessedPage
from tests.conftest import make_station
from tests.test_sync_faults import _serve

BIG_BYTES = 120_000_000
MAX_GROWTH_MB = 60


def _page(tail_bytes: int, seed: int) -> ProcessedPage:
    """A 300-dpi JPEG whose file carries ``tail_bytes`` after the image, as a huge scan's file would
    weigh (the archive reads headers only, so the extra bytes pass its checks unharmed)."""
    out = io.BytesIO()
    Image.new("RGB", (850, 1100), (200, 190, 180)).save(out, "JPEG", quality=85, dpi=(300, 300))
    data = out.getvalue() + seed.to_bytes(8, "big") + os.urandom(tail_bytes)
    record = {"skew_deg": 0.0, "rotation_deg": 0.0, "colour": "colour", "blank": False,
              "colour_reason": "red content (seal/heading) 1.20% of page; policy auto → colour", "dpi": 300,
              "colour_evidence": {"found_percent": {"red": 1.2}, "grey_source": False, "policy": "auto"},
              "dpi_source": "scanner"}
    return ProcessedPage(data, "image/jpeg", ".jpg", 850, 1100, 300, "colour", record)


def _seal_one_page(st, item: str, page: ProcessedPage) -> str:
    batch = st.store.open_batch({"archive_no": "D-BIG"}, {"item": item, "title": "large"}, "test", "op")
    st.store.add_page(batch.id, 1, page)
    return outbox.seal_batch(st.store, batch.id, st.station_id, st.key)


def _sync(home: Path, address: str) -> tuple[str, int]:
    """Run `quire-station sync` to completion; its output and its peak RSS in kB."""
    exe = Path(sys.executable).parent / "quire-station"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([str(exe), "--home", str(home), "sync", "--central", address],
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        # VmHWM, polled until the end: ru_maxrss would count this test's own memory, which a forked
        # child inherits across exec.
        peak_kb = 0
        while proc.poll() is None:
            try:
                peak_kb = max(peak_kb, _peak_kb(proc.pid))
            except (FileNotFoundError, ProcessLookupError, AssertionError):
                pass  # exited between poll() and the read
            time.sleep(0.01)
        log.seek(0)
        out = log.read()
    assert proc.returncode == 0, out
    return out, peak_kb


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_a_120_mb_page_syncs_in_bounded_memory_on_both_sides(tmp_path):
    central_home, home = tmp_path / "central", tmp_path / "st"
    st = make_station(home, station_id="st-big")
    archive = open_archive(config.load(central_home))
    stations.add(archive, "st-big", st.public_key.hex(), "unit-a")
    archive.close()
    server, address = _serve(central_home)
    try:
        enroll(st, address)
        _seal_one_page(st, "1-1", _page(200_000, seed=1))
        st.close()
        # Baseline: both processes as they are after syncing one ordinary page.
        _, station_base_kb = _sync(home, address)
        central_base_kb = _peak_kb(server.pid)
        st = open_station(station_config.load(home))
        big = _page(BIG_BYTES, seed=2)
        big_id, big_bytes = _seal_one_page(st, "1-2", big), len(big.data)
        del big
        st.close()
        out, station_big_kb = _sync(home, address)
        central_big_kb = _peak_kb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"committed 1 bundle(s), 1 pages, {big_bytes} bytes sent" in out, out
    archive = open_archive(config.load(central_home))
    try:
        (row,) = archive.catalogue.query("SELECT state FROM bundles WHERE id = ?", [big_id])
        assert row["state"] == "committed"
        assert verify(archive).ok
    finally:
        archive.close()
    growth = {"station": (station_big_kb - station_base_kb) / 1024, "central": (central_big_kb - central_base_kb) / 1024}
    print(f"peak RSS growth for a {BIG_BYTES / 1e6:.0f} MB page: station {growth['station']:.1f} MB "
          f"(peak {station_big_kb / 1024:.0f} MB), central {growth['central']:.1f} MB (peak {central_big_kb / 1024:.0f} MB)")
    assert all(mb < MAX_GROWTH_MB for mb in growth.values()), growth
