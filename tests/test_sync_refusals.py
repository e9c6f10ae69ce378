"""Refusals say their scope in the contract (google.rpc.ErrorInfo), and the station acts on it alone: a
refused bundle is set aside, a refused station (clock off, suspended) keeps every bundle sealed and
sends them once it is let in again; a bundle set aside is queued again by `outbox retry`."""

import json
import os
import sqlite3
import subprocess
import sys
import time

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from central import users
from quire.v1 import sync_pb2, sync_pb2_grpc
from station import outbox
from station.scan import scan
from station.transport import open_channel
from tests.central.test_auth import refused, signed
from tests.conftest import make_station, register, cli_in_process


def _error_info(err: grpc.RpcError) -> dict:
    (detail,) = rpc_status.from_call(err).details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    return {"reason": info.reason, "domain": info.domain, **info.metadata}


def test_every_refusal_carries_its_reason_and_scope(central, station):
    archive, address = central
    unsigned = refused(archive, address, [])
    assert _error_info(unsigned) == {"reason": "CALL_REFUSED", "domain": "quire.archive", "scope": "caller"}
    an_hour_ahead = refused(archive, address, signed(station.key, time_ms=int(time.time() * 1000) + 3_600_000))
    assert "set the station's clock" in an_hour_ahead.details()
    assert _error_info(an_hour_ahead)["scope"] == "caller"
    unknown_bundle = refused(archive, address, signed(station.key))
    assert _error_info(unknown_bundle) == {"reason": "UNKNOWN_BUNDLE", "domain": "quire.archive", "scope": "call"}
    scan(station, {"archive_no": "D-70"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1")
    (bundle,) = outbox.pending(station.store)
    channel = open_channel(station, address)
    try:
        offer = sync_pb2_grpc.StationSyncStub(channel).Offer
        try:
            offer(sync_pb2.OfferRequest(station_id=station.station_id, manifest=bundle["manifest"],
                                        signature=bytes(64)), timeout=10)
        except grpc.RpcError as err:
            forged = err
    finally:
        channel.close()
    assert "signature does not verify" in forged.details()
    assert _error_info(forged) == {"reason": "MANIFEST_SIGNATURE_INVALID", "domain": "quire.archive",
                                   "scope": "bundle"}


def _bundle_states(home) -> dict[str, str]:
    db = sqlite3.connect(f"file:{home / 'station.db'}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("SELECT id, state FROM bundles").fetchall())
    finally:
        db.close()


def _scanned_station(tmp_path, archive, address, materials: int = 1):
    """A registered station with sealed bundles, closed so that CLI processes own it."""
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    for n in range(1, materials + 1):
        scan(st, {"archive_no": "D-71"}, {"item": f"1-{n}", "title": "t"}, f"synthetic:seed={n},sheets=1")
    st.close()
    return tmp_path / "st"


def test_a_station_whose_clock_is_an_hour_off_keeps_its_bundles_until_the_clock_is_set(tmp_path, central):
    archive, address = central
    home = _scanned_station(tmp_path, archive, address)
    skewed = subprocess.run([sys.executable, "-m", "tests.station.skewed_clock", "3600", "--home", str(home), "sync"],
                            capture_output=True, text=True, timeout=120, env=os.environ)
    assert skewed.returncode == 4, skewed.stdout + skewed.stderr
    assert "call time is +3600 s from the archive's clock" in skewed.stderr
    assert "every bundle stays queued" in skewed.stderr and "REJECTED" not in skewed.stdout
    assert set(_bundle_states(home).values()) == {"sealed"}
    status = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)
    assert status["sync_state"].startswith("refused since")
    # The clock is set (NTP caught up): the same bundle goes.
    out = cli_in_process("quire-station", "--home", home, "sync").stdout
    assert "committed 1 bundle(s)" in out
    assert set(_bundle_states(home).values()) == {"committed"}


def test_a_suspended_then_reinstated_station_sends_its_bundles(tmp_path, central):
    archive, address = central
    home = _scanned_station(tmp_path, archive, address)
    tokens = {name: users.add(archive, name, name, ["admin"], ["unit-a"]) for name in ("adm1", "adm2")}

    def central_cli(who, *args):
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env={"QUIRE_TOKEN": tokens[who]})

    out = central_cli("adm1", "stations", "revoke", "st-test", "--reason", "reported missing").stdout
    change = out.split("#")[1].split()[0]
    suspended = cli_in_process("quire-station", "--home", home, "sync", check=False)
    assert suspended.returncode == 4 and "suspended" in suspended.stderr, suspended.stdout + suspended.stderr
    assert set(_bundle_states(home).values()) == {"sealed"}
    central_cli("adm2", "changes", "refuse", change, "--note", "found in the cupboard")  # reinstated
    out = cli_in_process("quire-station", "--home", home, "sync").stdout
    assert "committed 1 bundle(s)" in out
    assert set(_bundle_states(home).values()) == {"committed"}


def test_bundles_an_older_station_rejected_for_its_own_standing_are_queued_again_on_upgrade(tmp_path, central):
    """What an older station did: a refusal of the station marked the bundle rejected for good."""
    archive, address = central
    home = _scanned_station(tmp_path, archive, address, materials=2)
    db = sqlite3.connect(home / "station.db")
    clock, standards = [r[0] for r in db.execute("SELECT id FROM bundles ORDER BY created_at")]
    db.execute("UPDATE bundles SET state = 'rejected', last_error = ? WHERE id = ?", [
        "station st-test: call time is +3601 s from the archive's clock; set the station's clock (NTP) and retry",
        clock])
    db.execute("UPDATE bundles SET state = 'rejected', last_error = ? WHERE id = ?", [
        f"bundle {standards[:12]} rejected: BelowResolution page 1: 150 dpi, the profile asks for 200", standards])
    db.execute("DELETE FROM _migrations WHERE name = '0005_requeue_station_refusals'")  # as before the upgrade
    db.commit()
    db.close()
    out = cli_in_process("quire-station", "--home", home, "sync").stdout
    assert "committed 1 bundle(s)" in out
    # The bundle refused for itself stays aside (the archive never saw it, so it is not committed by a recheck).
    assert _bundle_states(home) == {clock: "committed", standards: "rejected"}


def test_a_bundle_set_aside_is_queued_again_by_outbox_retry(tmp_path, central):
    """The station's own copy of a page was damaged: the bundle is set aside; once the file is restored
    from a backup, `outbox retry` queues it and the next sync delivers it."""
    archive, address = central
    home = _scanned_station(tmp_path, archive, address)
    db = sqlite3.connect(home / "station.db")
    sha, media_type = db.execute("SELECT sha256, media_type FROM pages LIMIT 1").fetchone()
    db.close()
    (path,) = [p for p in (home / "pages").rglob(f"{sha}*")]
    good = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF]) + good[len(good) // 2 + 1:])
    first = cli_in_process("quire-station", "--home", home, "sync", check=False)
    assert first.returncode == 4 and "REJECTED" in first.stdout and "is damaged" in first.stdout, first.stdout
    (bundle_id,) = _bundle_states(home)
    assert _bundle_states(home)[bundle_id] == "rejected"
    path.write_bytes(good)  # restored from the backup
    missing = cli_in_process("quire-station", "--home", home, "outbox", "retry", "ffffffff", check=False)
    assert missing.returncode == 5 and "no rejected bundle ffffffff" in missing.stderr
    out = cli_in_process("quire-station", "--home", home, "outbox", "retry", bundle_id[:8]).stdout
    assert f"{bundle_id[:12]} queued again" in out
    assert _bundle_states(home)[bundle_id] == "sealed"
    out = cli_in_process("quire-station", "--home", home, "sync").stdout
    assert "committed 1 bundle(s)" in out and _bundle_states(home)[bundle_id] == "committed"
