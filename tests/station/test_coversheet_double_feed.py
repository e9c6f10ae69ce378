"""Double feeds: the scanner's ultrasonic sensor stops the batch like a jam, with what to re-feed.

Through the real seam: SANE's `test` device returns JAMMED from sane_read with its stand-in
double-feed sensor set (as the fujitsu and canon_dr backends report one), in the driver process.
"""

from station.errors import DoubleFeed, ScannerJammed
from station.profiles import load
from tests.conftest import make_station, run_cli


def _scan(home, source):
    return run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0042", "--material", "4-1-2",
                   "--title", "学历证明", "--source", source, check=False)


def test_a_double_feed_stops_the_batch_saying_to_refeed_the_two_sheets_and_the_same_command_resumes(tmp_path):
    home = tmp_path / "st"
    make_station(home).close()
    (home / "station.toml").write_text('dpi = 50\n[sane_options]\ntest_picture = "Color pattern"\n')
    stopped = _scan(home, "fault:double@4:sane:test:0")
    assert stopped.returncode == DoubleFeed.exit_code, stopped.stderr
    assert "double feed" in stopped.stderr and "two sheets" in stopped.stderr
    assert "separate them" in stopped.stderr and "pages 1–3 are stored" in stopped.stderr
    assert "page 4" in stopped.stderr
    st = make_station(home)
    try:
        (batch,) = st.store.batches()
        assert batch["state"] == "interrupted" and batch["pages"] == 3 and "double feed" in batch["last_error"]
    finally:
        st.close()
    resumed = _scan(home, "sane:test:0")
    assert resumed.returncode == 0, resumed.stderr
    st = make_station(home)
    try:
        (batch,) = st.store.batches()
        assert batch["state"] == "sealed" and batch["pages"] == 13
    finally:
        st.close()


def test_a_plain_jam_is_still_told_as_a_jam(tmp_path):
    home = tmp_path / "st"
    make_station(home).close()
    (home / "station.toml").write_text('dpi = 50\n[sane_options]\ntest_picture = "Color pattern"\n')
    jammed = _scan(home, "fault:jam@2:sane:test:0")
    assert jammed.returncode == ScannerJammed.exit_code
    assert "jammed" in jammed.stderr and "double feed" not in jammed.stderr


def test_every_ultrasonic_family_profile_switches_double_feed_detection_on():
    profiles = {p.name: p for p in load()}
    for name in ("fujitsu-fi", "canon-dr", "panasonic-kv"):  # kvs* are Panasonic's backends
        assert profiles[name].hardware.get("double_feed"), f"{name}: no double-feed options"
    assert profiles["fujitsu-fi"].sensors["double_feed"] == ("double-feed",)
