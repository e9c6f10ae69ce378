"""A deep rollback: the archive restored from an older copy of its home signs a smaller audit log than the
station has witnessed. The next sync is an alarm (exit 6, status, the daemon's log), the largest checkpoint
witnessed stays the baseline, and an auditor checking the restored archive against it is told."""

import json
import logging
import shutil
import sqlite3

from station import config as station_config
from station.home import open_station
from station.scan import scan
from station.sync import sync
from station.sync_worker import SyncWorker
from tests.conftest import make_station, register, cli_in_process
from tests.test_sync_faults import _serve


def _stop(server) -> None:
    server.terminate()
    server.wait(timeout=30)


def test_an_archive_restored_from_an_older_copy_is_an_alarm_and_fails_the_held_checkpoint(tmp_path, caplog):
    central_home, home, snapshot = tmp_path / "central", tmp_path / "st", tmp_path / "snapshot"
    st = ["quire-station", "--home", home]

    def scan_and_sync(item: str, check=True):
        cli_in_process(*st, "scan", "--dossier", "D-80", "--material", item, "--title", "t",
                       "--source", f"synthetic:seed={item[-1]},sheets=1")
        return cli_in_process(*st, "sync", check=check)

    server, address = _serve(central_home)
    port = int(address.rsplit(":", 1)[1])
    try:
        key = cli_in_process(*st, "init", "--id", "st-rb").stdout.split("--key ")[1].split()[0]
        cli_in_process("quire-central", "--home", central_home, "stations", "add", "st-rb", "--key", key, "--unit", "u")
        cli_in_process(*st, "enroll", "--central", address)
        scan_and_sync("1-1")
        _stop(server)
        shutil.copytree(central_home, snapshot)  # the backup: an older copy of the whole home, keys included
        server, _ = _serve(central_home, port)
        scan_and_sync("1-2")
        scan_and_sync("1-3")
        witnessed = json.loads(cli_in_process(*st, "checkpoint").stdout)
        (tmp_path / "witnessed.json").write_text(json.dumps(witnessed))
        ok = cli_in_process("quire-central", "--home", central_home, "audit", "verify", "--checkpoint",
                            tmp_path / "witnessed.json")
        assert "— OK" in ok.stdout

        _stop(server)  # the archive is restored from the backup and started again
        shutil.rmtree(central_home)
        shutil.copytree(snapshot, central_home)
        server, _ = _serve(central_home, port)
        alarmed = scan_and_sync("1-4", check=False)
        assert alarmed.returncode == 6, alarmed.stdout + alarmed.stderr
        assert "ALARM" in alarmed.stderr and "entries were removed" in alarmed.stderr
        assert f"witnessed at log size {witnessed['body']['tree_size']}" in alarmed.stderr
        status = json.loads(cli_in_process(*st, "status", "--json").stdout)
        assert "ALARM" in status["history_alarm"]
        # The largest checkpoint witnessed is still the one held, not the restored archive's smaller one.
        assert json.loads(cli_in_process(*st, "checkpoint").stdout) == witnessed
        checked = cli_in_process("quire-central", "--home", central_home, "audit", "verify", "--checkpoint",
                                 tmp_path / "witnessed.json", check=False)
        assert checked.returncode == 1 and "PROBLEM" in checked.stdout, checked.stdout + checked.stderr

        # The daemon's next round alarms again, in its log (the journal).
        cli_in_process(*st, "scan", "--dossier", "D-80", "--material", "1-5", "--title", "t", "--source",
                       "synthetic:seed=5,sheets=1")
        station = open_station(station_config.load(home))
        try:
            worker = SyncWorker(station.config, 60)
            caplog.set_level(logging.INFO, logger="station.sync_worker")
            worker._once(station, sync)
        finally:
            station.close()
        assert worker.state == "central HISTORY ALARM"
        assert any(r.levelno == logging.ERROR and "ALARM" in r.getMessage() for r in caplog.records)
    finally:
        _stop(server)


def test_an_upgraded_station_takes_the_largest_checkpoint_of_its_receipts_as_its_baseline(tmp_path, central):
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    for n in (1, 2):
        scan(st, {"archive_no": "D-81"}, {"item": f"1-{n}", "title": "t"}, f"synthetic:seed={n},sheets=1")
        assert len(sync(st).committed) == 1
    st.close()
    db = sqlite3.connect(tmp_path / "st" / "station.db")
    sizes = [json.loads(r[0])["audit"]["checkpoint"]["body"]["tree_size"] for r in db.execute(
        "SELECT receipt FROM bundles")]
    db.execute("DELETE FROM meta WHERE key = 'witnessed_receipt'")  # as a station before the upgrade held it
    db.execute("DELETE FROM _migrations WHERE name = '0004_witness_baseline'")
    db.commit()
    db.close()
    held = json.loads(cli_in_process("quire-station", "--home", tmp_path / "st", "checkpoint").stdout)
    assert held["body"]["tree_size"] == max(sizes)
