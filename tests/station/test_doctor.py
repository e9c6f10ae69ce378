"""`quire-station doctor`: each problem a technician meets shows up as WARN or FAIL with its fix."""

import json
import socket
from datetime import datetime, timezone

import pytest

from quire import discovery, keys
from station import doctor
from station.scan import scan
from tests.conftest import make_station, register, run_cli

DOSSIER = {"archive_no": "D-0042"}
MATERIAL = {"item": "4-1-2", "title": "学历证明"}


@pytest.fixture
def enrolled(tmp_path, central):
    """A station on SANE's test device, enrolled with a real central archive, with one sealed material."""
    archive, address = central
    st = make_station(tmp_path / "st", address, dpi=50, source="sane:test:0", zeroconf_interfaces=["127.0.0.1"])
    register(archive, address, st)
    scan(st, DOSSIER, MATERIAL, "synthetic:sheets=1")
    yield st, archive, address
    st.close()


@pytest.fixture
def advertised(enrolled):
    """The archive announced on zeroconf (loopback only) with its key fingerprint, as `serve` does."""
    st, archive, address = enrolled
    zc = discovery.open_zeroconf(["127.0.0.1"])
    host, port = address.rsplit(":", 1)
    info = discovery.advertise(zc, discovery.CENTRAL_TYPE, f"doctor-test-{port}", [host], int(port),
                               {"fp": keys.fingerprint(archive.public_key)})
    yield
    zc.unregister_service(info)
    zc.close()


def _by_name(checks):
    return {c.name: c for c in checks}


def test_a_healthy_station_has_no_failures(enrolled, advertised):
    st, archive, address = enrolled
    checks = _by_name(doctor.run_checks(st.config, zeroconf_timeout_s=30, disk_fail_bytes=0, disk_warn_bytes=0))
    assert [c.line() for c in checks.values() if c.level == "FAIL"] == []
    assert checks["scanner"].level == "OK"
    assert "test:0 (Noname frontend-tester): profile sane-test" in checks["scanner"].message
    assert checks["key"].level == "OK" and "mode 0600" in checks["key"].message
    assert checks["store"].level == "OK" and "all 2 page files present" in checks["store"].message
    assert checks["central"].level == "OK" and f"{address} answers with the pinned key" in checks["central"].message
    assert checks["zeroconf"].level == "OK" and "with the pinned key" in checks["zeroconf"].message
    assert checks["disk"].level == "OK"
    assert checks["service"].level == "WARN" and "systemctl start quire-station" in checks["service"].fix


def test_a_key_others_can_read_fails_with_the_chmod(enrolled):
    st = enrolled[0]
    st.config.key_path.chmod(0o644)
    check = doctor.check_key(st.config)
    assert check.level == "FAIL" and "readable by others (mode 0644)" in check.message
    assert f"chmod 600 {st.config.key_path}" in check.fix


def test_a_damaged_store_fails(tmp_path):
    st = make_station(tmp_path / "st", dpi=50)
    scan(st, DOSSIER, MATERIAL, "synthetic:sheets=1")
    st.close()
    db = st.config.db_path
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page + 8:3 * page] = b"\xa5" * (page - 8)   # scribble over a table page
    db.write_bytes(bytes(data))
    check = doctor.check_store(st.config)
    assert check.level == "FAIL" and ("damaged" in check.message or "cannot be read" in check.message)
    assert "restore them from backup" in check.fix


def test_a_missing_page_file_fails(enrolled):
    st = enrolled[0]
    page = st.store.pages(st.store.batches()[0]["id"])[0]
    st.store.page_path(page["sha256"], page["media_type"]).unlink()
    check = doctor.check_store(st.config)
    assert check.level == "FAIL" and "1 of 2 page files are missing" in check.message


def test_a_clock_behind_the_store_fails(enrolled):
    st = enrolled[0]
    st.store.db.execute("UPDATE pages SET captured_at = '2099-01-01T00:00:00.000Z'")
    check = doctor.check_clock(st.config)
    assert check.level == "FAIL" and "behind the last page stored (2099-01-01" in check.message
    assert "timedatectl set-ntp true" in check.fix


def test_a_clock_that_booted_in_the_past_fails(enrolled):
    check = doctor.check_clock(enrolled[0].config, now=datetime(1970, 1, 1, tzinfo=timezone.utc))
    assert check.level == "FAIL" and "in the past" in check.message


def test_a_central_with_another_key_fails_loudly(enrolled):
    st = enrolled[0]
    st.store.set_meta("central_key", "11" * 32)
    check = doctor.check_central(st.config)
    assert check.level == "FAIL" and "but this station pinned" in check.message


def test_an_unreachable_central_is_a_warning_bundles_wait(enrolled):
    with socket.socket() as probe:            # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = enrolled[0].config.model_copy(update={"central": f"127.0.0.1:{port}"})
    check = doctor.check_central(config)
    assert check.level == "WARN" and "unreachable" in check.message and "bundles wait" in check.fix


def test_a_station_not_enrolled_is_told_to_enrol(tmp_path):
    st = make_station(tmp_path / "st")
    st.close()
    check = doctor.check_central(st.config)
    assert check.level == "WARN" and "quire-station enroll --central HOST:PORT" in check.fix


def test_little_disk_fails_with_what_to_free(enrolled):
    check = doctor.check_disk(enrolled[0].config.home, fail_below=1 << 62, warn_below=1 << 62)
    assert check.level == "FAIL" and "quire-station purge" in check.fix


def test_scanner_missing_or_only_synthetic(enrolled):
    config = enrolled[0].config
    missing = doctor.check_scanner(config.model_copy(update={"source": "sane:nosuch:0"}), None)
    assert missing.level == "FAIL" and "70-quire-scanners.rules" in missing.fix
    demo = doctor.check_scanner(config.model_copy(update={"source": "synthetic"}), None)
    assert demo.level == "WARN" and 'source = "sane:auto"' in demo.fix


def test_zeroconf_that_cannot_start_fails(enrolled):
    config = enrolled[0].config.model_copy(update={"zeroconf_interfaces": ["203.0.113.7"]})
    check = doctor.check_zeroconf(config, timeout_s=0.1)
    assert check.level == "FAIL" and "zeroconf_interfaces" in check.fix


def test_doctor_runs_read_only(enrolled):
    """Run as root on a service's store, doctor must not leave files the service's user cannot write."""
    st = enrolled[0]
    st.close()   # no -wal / -shm files left: a read-only open would create them
    before = sorted(p.name for p in st.config.home.iterdir())
    assert doctor.check_store(st.config).level == "OK"
    doctor.check_clock(st.config)
    doctor.check_central(st.config)
    assert sorted(p.name for p in st.config.home.iterdir()) == before


def test_the_command_prints_each_check_and_fails_on_a_failure(tmp_path):
    home = tmp_path / "st"
    make_station(home).close()
    (home / "station.toml").write_text('zeroconf_interfaces = ["127.0.0.1"]\nsource = "synthetic"\n')
    (home / "keys" / "station.key").chmod(0o640)
    proc = run_cli("quire-station", "--home", home, "doctor", "--zeroconf-timeout", "0.2", check=False)
    lines = proc.stdout.splitlines()
    names = [line.split()[1] for line in lines if line.split()[0] in ("OK", "WARN", "FAIL")]
    assert names == ["service", "scanner", "key", "store", "disk", "clock", "central", "zeroconf"]
    assert proc.returncode == 1
    assert any(line.startswith("FAIL key") for line in lines)
    assert f"fix: chmod 600 {home / 'keys' / 'station.key'}" in proc.stdout
    as_json = json.loads(run_cli("quire-station", "--home", home, "doctor", "--json", "--zeroconf-timeout", "0.2",
                                 check=False).stdout)
    assert {c["name"]: c["level"] for c in as_json}["key"] == "FAIL"
