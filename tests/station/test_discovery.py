"""Zeroconf on loopback only: the archive finds stations, stations find the archive."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from quire import discovery
from quire import keys
from station import config
from station.discovery import StationAnnouncement
from tests.conftest import cli_in_process, make_station, run_cli
from tests.station.test_daemon import daemons, listener, make_home  # noqa: F401 - fixtures
from tests.station.test_notify import status_has


def test_a_station_announces_its_id_state_and_outbox(tmp_path):
    cfg = config.load(tmp_path, zeroconf_interfaces=["127.0.0.1"])
    announcement = StationAnnouncement(cfg, "st-room-7", "SHA256:" + "ab" * 32, "idle", 3)
    zc = discovery.open_zeroconf(["127.0.0.1"])
    try:
        found = discovery.browse(zc, discovery.STATION_TYPE, timeout_s=5, want=lambda p: p.get("id") == "st-room-7")
        assert found and found[0]["properties"]["state"] == "idle" and found[0]["properties"]["outbox"] == "3"
        announcement.update("scanning", 4)
        info = zc.get_service_info(discovery.STATION_TYPE, found[0]["name"], timeout=3000)
        assert info.decoded_properties["state"] == "scanning" and info.decoded_properties["outbox"] == "4"
    finally:
        zc.close()
        announcement.close()


def test_the_service_announces_a_small_fixed_record_whatever_its_status_line_says(tmp_path, listener, daemons):
    # The status line went into TXT: a long dossier number (or scanner fault, or note) made it pass the
    # 255 bytes a TXT string holds, and the announcement raised ValueError and kept the old state.
    home = make_home(tmp_path, source="synthetic:sheets=1", dpi=50)
    with open(home / "station.toml", "a") as f:
        f.write('announce = true\nzeroconf_interfaces = ["127.0.0.1"]\n')
    station = make_station(home)
    station_id, fingerprint = station.station_id, keys.fingerprint(station.public_key)
    station.close()
    daemon = daemons(home, listener)
    assert listener.next(60).get("READY") == "1", daemon.output()
    dossier = "D-" + "档案" * 60        # 362 bytes of UTF-8 in the status line
    run_cli("quire-station", "--home", home, "queue", "add", "--dossier", dossier, "--material", "4-1-2",
            "--title", "学历证明" * 20)
    assert len(listener.until(status_has("ready, next D-"))[-1]["STATUS"].encode()) > 400
    zc = discovery.open_zeroconf(["127.0.0.1"])
    try:
        found = discovery.browse(zc, discovery.STATION_TYPE, timeout_s=10,
                                 want=lambda p: p.get("id") == station_id and p.get("state") == "ready")
        assert found, daemon.output()
        info = zc.get_service_info(discovery.STATION_TYPE, found[0]["name"], timeout=3000)
    finally:
        zc.close()
    assert found[0]["properties"] == {"v": "1", "id": station_id, "state": "ready", "outbox": "0", "fp": fingerprint}
    assert len(info.text) < 150
    assert "not updated" not in daemon.output() and "Traceback" not in daemon.output()
    assert daemon.terminate() == 0


def _adapters():
    from ifaddr import IP, Adapter

    return [Adapter("lo", "lo", [IP("127.0.0.1", 8, "lo"), IP(("::1", 0, 0), 128, "lo")], index=1),
            Adapter("eth0", "eth0", [IP("192.168.10.20", 24, "eth0"), IP(("2001:db8::20", 0, 0), 64, "eth0"),
                                     IP(("fe80::2", 0, 2), 64, "eth0")], index=2)]


def test_the_interfaces_real_addresses_are_announced_not_loopback():
    assert discovery.announced_addresses("all", _adapters()) == ["192.168.10.20", "2001:db8::20", "fe80::2%2"]
    assert discovery.announced_addresses(["192.168.10.20", "127.0.0.1"], _adapters()) == ["192.168.10.20"]
    # Bound to loopback only (tests, the demo): loopback is all there is to announce.
    assert discovery.announced_addresses(["127.0.0.1"], _adapters()) == ["127.0.0.1"]
    lo_only = _adapters()[:1]
    assert discovery.announced_addresses("all", lo_only) == ["127.0.0.1", "::1"]
    with pytest.raises(ValueError, match="203.0.113.9.*correct zeroconf_interfaces"):
        discovery.announced_addresses(["203.0.113.9"], _adapters())


def test_an_announcement_carries_every_address_link_local_with_its_scope():
    info = discovery.service_info(discovery.CENTRAL_TYPE, "quire-central-x",
                                  discovery.announced_addresses("all", _adapters()), 7443, {"fp": "SHA256:x"})
    assert info.parsed_scoped_addresses() == ["192.168.10.20", "2001:db8::20", "fe80::2%2"]


@pytest.fixture
def serve(tmp_path):
    """Start `quire-central serve` on a fresh port, announcing on loopback only; (process, address, fingerprint)."""
    started = []

    def start(home, *args):
        exe = Path(sys.executable).parent / "quire-central"
        proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--listen", "127.0.0.1:0",
                                 "--zeroconf-interface", "127.0.0.1", *args], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        address = proc.stdout.readline().strip().removeprefix("listening on ")
        fingerprint = proc.stdout.readline().strip().removeprefix("key fingerprint ")
        return proc, address, fingerprint

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def _stop(proc):
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_a_station_finds_its_archive_on_a_new_port_and_refuses_an_impostor(tmp_path, serve):
    real_home, st = tmp_path / "central", ["--home", tmp_path / "st"]
    proc, old, fingerprint = serve(real_home)
    (tmp_path / "st").mkdir()
    # Retries are not what this is about: an archive that stays away is reported after 2 s.
    (tmp_path / "st" / "station.toml").write_text(f'central = "{old}"\nzeroconf_interfaces = ["127.0.0.1"]\n'
                                                  'sync_retry_span_s = 2\n')
    key = re.search(r"--key ([0-9a-f]{64})", cli_in_process("quire-station", *st, "init", "--id", "st-m").stdout)[1]
    cli_in_process("quire-central", "--home", real_home, "stations", "add", "st-m", "--key", key, "--unit", "u1")
    assert "enrolled into unit u1" in cli_in_process("quire-station", *st, "enroll").stdout
    cli_in_process("quire-station", *st, "scan", "--dossier", "D-5", "--material", "1-1", "--title", "履历表",
                   "--source", "synthetic:seed=1,sheets=1")
    _stop(proc)
    proc, new, _ = serve(real_home)  # the archive restarted on another port
    assert new != old
    synced = run_cli("quire-station", *st, "sync", check=False)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "committed 1 bundle(s), 2 pages" in synced.stdout
    assert f"moved from {old} to {new} (found by zeroconf)" in synced.stderr
    _stop(proc)

    # Another archive (another key) answers where our archive's service name now points.
    impostor_home = tmp_path / "impostor"
    _, impostor, other = serve(impostor_home, "--no-advertise")
    cli_in_process("quire-station", *st, "scan", "--dossier", "D-5", "--material", "2-1", "--title", "自传",
                   "--source", "synthetic:seed=2,sheets=1")
    host, port = impostor.rsplit(":", 1)
    zc = discovery.open_zeroconf(["127.0.0.1"])
    try:
        info = discovery.advertise(zc, discovery.CENTRAL_TYPE, f"quire-central-{socket.gethostname()}", [host],
                                   int(port), {"fp": other, "insecure": "0"})
        ignored = run_cli("quire-station", *st, "sync", check=False)  # announced with its own key: not ours
        # It claims our archive's key in its TXT record: the pinned TLS certificate gives it away.
        zc.update_service(discovery.service_info(discovery.CENTRAL_TYPE, info.name.split(".")[0], [host], int(port),
                                                 {"fp": fingerprint, "insecure": "0"}))
        refused = run_cli("quire-station", *st, "sync", check=False)
    finally:
        zc.unregister_all_services()
        zc.close()
    assert ignored.returncode == 4 and "unreachable" in ignored.stdout + ignored.stderr
    assert refused.returncode == 6, refused.stdout + refused.stderr
    assert f"zeroconf announces key {fingerprint} at {impostor}" in refused.stderr
    assert "not the certificate pinned at enrolment; nothing was sent" in refused.stderr
    assert "materials       0" in cli_in_process("quire-central", "--home", impostor_home, "info").stdout
    assert "outbox: 1 waiting" in cli_in_process("quire-station", *st, "status").stdout
