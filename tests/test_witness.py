"""Stations are witnesses of the archive's audit log: a forked or rewritten history raises an alarm."""

import shutil

from central import config, profile
from central.archive import open_archive
from central.server import build_server
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register


def _serve(home, port=0):
    archive = open_archive(config.load(home))
    server, port = build_server(archive, f"127.0.0.1:{port}")
    server.start()
    return archive, server, f"127.0.0.1:{port}"


def test_an_archive_restored_from_an_old_copy_and_diverging_is_caught(tmp_path):
    home = tmp_path / "central"
    archive, server, address = _serve(home)
    st = register(archive, address, make_station(tmp_path / "st", address))
    try:
        scan(st, {"archive_no": "D-W"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1")
        scan(st, {"archive_no": "D-W"}, {"item": "1-2", "title": "t"}, "synthetic:seed=2,sheets=1")
        server.stop(None).wait()
        archive.close()
        shutil.copytree(home, tmp_path / "snapshot")  # an old copy of the whole archive, keys included
        archive, server, address = _serve(home, int(address.rsplit(":", 1)[1]))
        first = sync(st)
        assert len(first.committed) == 2 and not first.alarms  # the station now holds the log's root
        server.stop(None).wait()
        archive.close()

        # The archive is "restored" from the old copy and its history diverges from what was witnessed.
        shutil.rmtree(home)
        shutil.copytree(tmp_path / "snapshot", home)
        archive, server, address = _serve(home, int(address.rsplit(":", 1)[1]))
        profile.set_default(archive, "dat31")  # a different entry where the station saw its ingest
        scan(st, {"archive_no": "D-W"}, {"item": "1-3", "title": "t"}, "synthetic:seed=3,sheets=1")
        second = sync(st)
        assert second.alarms and "history may have been rewritten" in second.alarms[0]
        assert "ALARM" in st.store.get_meta("history_alarm")
    finally:
        server.stop(None).wait()
        archive.close()
        st.close()


def test_an_honest_archive_raises_no_alarm_over_many_syncs(tmp_path):
    archive, server, address = _serve(tmp_path / "central")
    st = register(archive, address, make_station(tmp_path / "st", address))
    try:
        for n in range(1, 4):
            scan(st, {"archive_no": "D-H"}, {"item": f"2-{n}", "title": "t"}, f"synthetic:seed={n},sheets=1")
            report = sync(st)
            assert len(report.committed) == 1 and report.alarms == []
        assert st.store.get_meta("history_alarm") is None
    finally:
        server.stop(None).wait()
        archive.close()
        st.close()
