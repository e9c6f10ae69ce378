"""The daemon's background sync: bundles go out, receipted pages past retention are purged, and
rescan requests from the archive's QC are kept for the operator."""

from central import qc, users
from station import outbox
from station.scan import scan
from station.sync import sync
from station.sync_worker import SyncWorker
from tests.conftest import make_station, register


def test_a_sync_round_commits_purges_past_retention_and_keeps_rescan_requests(tmp_path, central):
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, retention_days=0))
    try:
        scan(st, {"archive_no": "D-5"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1", operator="op")
        worker = SyncWorker(st.config, 60)
        worker._once(st, sync)
        assert worker.state == "central online"
        (bundle,) = outbox.bundles(st.store)
        assert bundle["state"] == "purged"  # receipt verified, retention 0 days: the page files went
        assert not any(st.config.pages_dir.rglob("*.jpg"))
        token = users.add(archive, "qc1", "质检", ["inspector"], ["unit-a"])
        inspector = users.authenticate(archive, token)
        batch = qc.start(archive, inspector, bundle["id"])
        for n in batch["sample"]:
            qc.judge(archive, inspector, bundle["id"], n, False, "模糊")
        assert qc.decide(archive, inspector, bundle["id"])["state"] == "returned"
        worker._once(st, sync)
        from station.notices import held

        (notice,) = held(st)
        assert (notice["archive_no"], notice["item"], [p["n"] for p in notice["pages"]]) == ("D-5", "1-1", [1, 2])
    finally:
        st.close()
