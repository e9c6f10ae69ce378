"""`quire-station status` says whether the receipts it keeps still verify, not only 'committed'."""

import json
import sqlite3

from station.scan import scan
from station.sync import sync
from tests.conftest import cli_in_process


def test_status_checks_every_kept_receipt_against_the_pinned_key(station):
    for n, item in enumerate(("1-1", "4-1-2"), start=1):
        scan(station, {"archive_no": "D-9"}, {"item": item, "title": "材料"}, f"synthetic:seed={n},sheets=1")
    assert len(sync(station).committed) == 2
    home = station.config.home
    station.close()

    out = cli_in_process("quire-station", "--home", home, "status").stdout
    assert "receipts: 2 verified against the pinned archive key" in out and "DO NOT VERIFY" not in out

    # A receipt altered on the station's disk no longer verifies, and status says which.
    db = sqlite3.connect(home / "station.db")
    bundle_id, receipt = db.execute("SELECT id, receipt FROM bundles ORDER BY created_at LIMIT 1").fetchone()
    db.execute("UPDATE bundles SET receipt = ? WHERE id = ?", [bytes(receipt).replace(b'"pages"', b'"Pages"'), bundle_id])
    db.commit()
    db.close()
    out = cli_in_process("quire-station", "--home", home, "status").stdout
    assert "receipts: 1 verified against the pinned archive key, 1 DO NOT VERIFY" in out
    assert f"{bundle_id[:12]} receipt does not verify" in out
    failed = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)["receipts"]["failed"]
    assert [f["bundle"] for f in failed] == [bundle_id]
