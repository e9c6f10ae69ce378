"""Zeroconf on loopback only: the archive finds stations, stations find the archive."""

from quire import discovery
from station import config
from station.discovery import StationAnnouncement


def test_a_station_announces_its_id_state_and_outbox(tmp_path):
    cfg = config.load(tmp_path, zeroconf_interfaces=["127.0.0.1"])
    announcement = StationAnnouncement(cfg, "st-room-7", "idle", 3)
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
