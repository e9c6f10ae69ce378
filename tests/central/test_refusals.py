"""Every refusal at the archive is in its audit log — who, what, why — through the real interfaces:
station calls and uploads over TLS, reader calls, the CLI; a flood is counted, not written out."""

import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import grpc
import nacl.signing
import pytest

from central import audit, refusals, users
from quire.v1 import access_pb2, access_pb2_grpc
from station import outbox
from station.enrol import enroll
from station.errors import StationError
from station.scan import scan
from station.sync import sync
from station.transport import TLS_NAME
from tests.central.test_auth import raw_call, signed
from tests.conftest import cli_in_process, make_station, register


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


def refused_calls(archive) -> list[dict]:
    return [e for e in audit.entries(archive) if e["event"] == "call.refused"]


def refuse(archive, address, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        raw_call(archive, address, metadata)
    return info.value


def test_refused_station_calls_are_logged_naming_who_what_and_why(tmp_path, central, station):
    archive, address = central
    impostor = make_station(tmp_path / "impostor", address)       # its own key, claiming st-test
    with pytest.raises(StationError):
        enroll(impostor, address)
    impostor.close()
    (enrolment,) = refused_calls(archive)
    assert (enrolment["method"], enrolment["claimed_station"]) == ("/quire.v1.StationSync/Enroll", "st-test")
    assert "already enrolled with another key" in enrolment["reason"]
    stranger = nacl.signing.SigningKey.generate()
    refuse(archive, address, signed(stranger, station_id="st-ghost"))      # a key never registered
    refuse(archive, address, signed(stranger))                              # an impostor claiming st-test
    refuse(archive, address, [])                                            # unsigned
    refuse(archive, address, signed(station.key, time_ms=int(time.time() * 1000) - 3_600_000))  # clock
    captured = signed(station.key)
    refuse(archive, address, captured)          # passes authentication: the bundle is unknown (not a refusal)
    refuse(archive, address, captured)          # replayed
    logged = refused_calls(archive)[1:]
    assert [(e["refusal"], e.get("claimed_station")) for e in logged] == [
        ("StationUnproven", "st-ghost"), ("StationUnproven", "st-test"), ("CallRefused", "st-test"),
        ("CallRefused", "st-test"), ("CallRefused", "st-test")]
    for entry, why in zip(logged, ("not registered", "signature does not verify", "unsigned call", "clock",
                                   "replayed call refused")):
        assert why in entry["reason"], entry
        assert entry["method"] == "/quire.v1.StationSync/QueryWriteStatus"
        # Who: nobody proved to be st-test, so the entry names the address, never the claimed station.
        assert entry["by"].startswith("peer:ipv4:127.0.0.1:") and entry["peer"] in entry["by"]


def test_refused_bundles_are_logged_with_the_station_and_the_bundle(central, station):
    archive, _ = central
    edited = scan(station, {"archive_no": "D-1"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=1,sheets=1")
    changed = scan(station, {"archive_no": "D-1"}, {"item": "1-2", "title": "简历"}, "synthetic:seed=2,sheets=1")
    forged = bytes(outbox.get(station.store, edited.bundle_id)["manifest"]).replace("履历表".encode(), "奖励表".encode())
    station.store.db.execute("UPDATE bundles SET manifest = ? WHERE id = ?", [forged, edited.bundle_id])  # after signing
    page = json.loads(outbox.get(station.store, changed.bundle_id)["manifest"])["pages"][0]
    path = station.store.page_path(page["sha256"], page["media_type"])
    path.write_bytes(path.read_bytes()[:-10] + b"x" * 10)                  # changed after sealing
    report = sync(station)
    assert set(report.rejected) == {edited.bundle_id, changed.bundle_id}
    logged = {e.get("bundle_id"): e for e in refused_calls(archive)}
    entry = logged[hashlib.sha256(forged).hexdigest()]   # the archive knows a bundle by the manifest it got
    assert (entry["by"], entry["method"]) == ("station:st-test", "/quire.v1.StationSync/Offer")
    assert "signature" in entry["reason"] and "nothing from this bundle was accepted" in entry["reason"]
    (damaged,) = [e for e in refused_calls(archive) if e["method"] == "/quire.v1.StationSync/Write"]
    assert damaged["by"] == "station:st-test" and page["sha256"] in damaged["reason"]


def test_a_revoked_station_is_refused_and_logged_as_stations_revoke_promises(tmp_path, central, station):
    archive, _ = central
    tokens = {name: users.add(archive, name, name, ["admin"], ["*"]) for name in ("adm1", "adm2")}
    home = archive.config.home
    out = cli_in_process("quire-central", "--home", home, "stations", "revoke", "st-test", "--reason", "stolen",
                  env={"QUIRE_TOKEN": tokens["adm1"]}).stdout
    scan(station, {"archive_no": "D-1"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1")
    assert not sync(station).committed
    cli_in_process("quire-central", "--home", home, "changes", "approve", out.split("#")[1].split()[0],
            env={"QUIRE_TOKEN": tokens["adm2"]})
    scan(station, {"archive_no": "D-1"}, {"item": "1-2", "title": "t"}, "synthetic:seed=2,sheets=1")
    assert not sync(station).committed
    reasons = [e["reason"] for e in refused_calls(archive) if e.get("claimed_station") == "st-test"]
    assert any("suspended since" in r for r in reasons) and any("was revoked at" in r for r in reasons)


def test_serve_without_verbose_prints_each_refusal_as_one_warning_line(tmp_path):
    from central import config
    from central.archive import open_archive

    home = tmp_path / "central"
    open_archive(config.load(home)).close()
    exe = Path(sys.executable).parent / "quire-central"
    proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-advertise"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip().removeprefix("listening on ")
        archive = open_archive(config.load(home))
        refuse(archive, address, signed(nacl.signing.SigningKey.generate(), station_id="st-ghost"))
        archive.close()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    (line,) = [line for line in stderr.splitlines() if "refused" in line]
    assert " WARNING " in line and "/quire.v1.StationSync/QueryWriteStatus" in line
    assert "peer:ipv4:127.0.0.1" in line and "station 'st-ghost' is not registered" in line


def test_a_flood_of_refusals_is_written_up_to_the_limit_and_the_rest_counted(central, monkeypatch):
    archive, address = central
    for _ in range(refusals.PER_CALLER + 15):
        refuse(archive, address, [])
    logged = refused_calls(archive)
    assert len(logged) == refusals.PER_CALLER and not any("suppressed" in e for e in logged)
    monkeypatch.setattr(refusals, "WINDOW_S", 0.5)   # the next minute, sooner
    time.sleep(0.6)
    refuse(archive, address, [])
    later = refused_calls(archive)[-1]
    assert later["suppressed"] == 15 and later["refusal"] == "CallRefused"


# ---- tokens and roles (item 2) -----------------------------------------------------------------

def test_a_garbage_or_missing_token_on_the_cli_is_refused_and_logged(archive):
    users.add(archive, "adm", "adm", ["admin"], ["*"])
    home = archive.config.home
    garbage = cli_in_process("quire-central", "--home", home, "consult", "ls", env={"QUIRE_TOKEN": "garbage"}, check=False)
    missing = cli_in_process("quire-central", "--home", home, "consult", "ls", env={"QUIRE_TOKEN": ""}, check=False)
    assert (garbage.returncode, missing.returncode) == (77, 77)
    assert "not a user token" in garbage.stderr and "this archive has users" in missing.stderr
    logged = [e for e in audit.entries(archive) if e["event"] == "login.refused"]
    assert [(e["token"], e["by"].startswith("local:")) for e in logged] == [("malformed", True), ("missing", True)]


def test_a_reader_call_without_or_with_a_malformed_token_is_refused_and_logged(central):
    archive, address = central
    users.add(archive, "li", "李四", ["reader"], ["unit-a"])
    creds = grpc.ssl_channel_credentials(archive.tls.cert_pem)
    with grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", TLS_NAME)]) as channel:
        stub = access_pb2_grpc.ArchiveAccessStub(channel)
        for metadata in ([], [("authorization", "Bearer garbage")], [("authorization", "Bearer qt1.li.wrong")]):
            with pytest.raises(grpc.RpcError) as info:
                stub.Whoami(access_pb2.WhoamiRequest(), metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    logged = [e for e in audit.entries(archive) if e["event"] == "login.refused"]
    assert [(e["token"], e["user"]) for e in logged] == [("missing", None), ("malformed", None), ("refused", "li")]
    assert all(e["by"].startswith("peer:ipv4:127.0.0.1:") for e in logged)
    assert not any("wrong" in json.dumps(e) for e in logged)   # never the secret
    assert refused_calls(archive) == []                        # logged once, where it was refused


def test_an_administrator_who_is_also_auditor_is_refused_with_exit_77_and_logged(archive):
    proc = cli_in_process("quire-central", "--home", archive.config.home, "users", "add", "boss", "--name", "Boss",
                   "--role", "admin", "--role", "auditor", "--unit", "*", check=False)
    assert proc.returncode == 77, proc.stderr
    assert "admin and auditor cannot be held by one person" in proc.stderr and "三员分立" in proc.stderr
    (entry,) = [e for e in audit.entries(archive) if e["event"] == "access.denied"]
    assert (entry["action"], entry["user"], entry["roles"]) == ("user.add", "boss", ["admin", "auditor"])
    assert users.listing(archive) == []


# ---- every command as a person once there are users (item 3) ------------------------------------

@pytest.fixture
def staffed(tmp_path, central, station):
    """Unit-a's dossier D-1 catalogued and one of its bundles quarantined, unit-b's D-9 catalogued; people."""
    archive, address = central
    scan(station, {"archive_no": "D-1", "name": "张三"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=1,sheets=1")
    st_b = register(archive, address, make_station(tmp_path / "st-b", address, station_id="st-b"), unit="unit-b")
    scan(st_b, {"archive_no": "D-9", "name": "王九"}, {"item": "1-1", "title": "履历表"}, "synthetic:seed=3,sheets=1")
    assert len(sync(station).committed) == 1 and len(sync(st_b).committed) == 1
    st_b.close()
    # Item 1-1 again: quarantined as already catalogued.
    held = scan(station, {"archive_no": "D-1"}, {"item": "1-1", "title": "履历表", "rescan": True},
                "synthetic:seed=2,sheets=1")
    assert held.bundle_id in sync(station).rejected
    tokens = {uid: users.add(archive, uid, uid, [role], units) for uid, role, units in (
        ("adm", "admin", ["*"]), ("aud", "auditor", ["*"]), ("arc-a", "archivist", ["unit-a"]),
        ("arc-b", "archivist", ["unit-b"]), ("li", "reader", ["unit-a"]))}

    def cli(who, *args):
        env = {"QUIRE_TOKEN": tokens[who] if who else ""}
        return cli_in_process("quire-central", "--home", archive.config.home, *args, env=env, check=False)

    return archive, held.bundle_id, cli


READS = [  # command line, the command as logged, who may, who may not
    (("verify", "--quick"), "verify", "aud", "adm"),
    (("info",), "info", "li", None),
    (("quarantine", "ls"), "quarantine ls", "arc-a", "adm"),
    (("quarantine", "show", "BUNDLE"), "quarantine show", "arc-a", None),
    (("audit", "verify"), "audit verify", "aud", None),
    (("audit", "checkpoint"), "audit checkpoint", "aud", "arc-a"),
    (("stations", "ls"), "stations ls", "adm", "li"),
    (("stations", "pending"), "stations pending", "aud", None),
    (("profiles", "ls"), "profiles ls", "arc-a", "li"),
    (("profiles", "show", "gbt33870"), "profiles show", "adm", None),
]


def test_with_users_every_command_acts_as_a_person_and_is_logged(staffed):
    archive, held, cli = staffed
    for command, logged_as, allowed, denied in READS:
        args = [held if a == "BUNDLE" else a for a in command]
        anonymous = cli(None, *args)
        assert anonymous.returncode == 77 and "this archive has users" in anonymous.stderr, command
        assert audit.entries(archive)[-1]["event"] == "login.refused", command
        if denied:
            proc = cli(denied, *args)
            assert proc.returncode == 77 and "may not" in proc.stderr, (command, proc.stderr)
            last = audit.entries(archive)[-1]
            assert (last["event"], last["by"]) == ("access.denied", f"user:{denied}"), command
        proc = cli(allowed, *args)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        login = [e for e in audit.entries(archive) if e["event"] == "login"][-1]
        assert (login["by"], login["command"]) == (f"user:{allowed}", logged_as)


def test_listings_hold_only_the_units_of_the_person_asking(staffed):
    archive, held, cli = staffed
    assert "D-1" in cli("arc-a", "ls").stdout and "D-9" not in cli("arc-a", "ls").stdout
    assert "D-9" in cli("arc-b", "ls").stdout and "D-1" not in cli("arc-b", "ls").stdout
    assert [json.loads(l)["archive_no"] for l in cli("arc-b", "search", "--name", "", "--json").stdout.splitlines()] \
        == ["D-9"]
    assert held[:12] in cli("arc-a", "quarantine", "ls").stdout
    assert cli("arc-b", "quarantine", "ls").stdout.strip() == "no bundle is quarantined"
    other = cli("arc-b", "quarantine", "show", held[:12])
    assert other.returncode == 1 and "no quarantined bundle" in other.stderr


def test_a_refusal_waiting_for_the_writer_lock_is_written_before_serve_exits(tmp_path, pg_cluster,
                                                                              pg_catalogue_template):
    """A forged call is refused at once while another process holds the writer lock, so its audit entry
    waits; serve is told to stop (SIGTERM) and the lock freed just after: the entry is in the audit log
    once the process has exited (it used to die with the process, its thread a daemon)."""
    import psycopg

    from central import config
    from central.archive import open_archive
    from central.store.postgres import WRITE_LOCK

    home = tmp_path / "central"
    home.mkdir()
    url = pg_cluster.create_database(pg_catalogue_template)
    (home / "central.toml").write_text(f'catalogue = "{url}"\n')
    archive = open_archive(config.load(home))
    before = len(refused_calls(archive))
    exe = Path(sys.executable).parent / "quire-central"
    proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-advertise"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip().removeprefix("listening on ")
        with psycopg.connect(url) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            err = refuse(archive, address, signed(nacl.signing.SigningKey.generate(), station_id="st-ghost"))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err.details()
            proc.terminate()
            with pytest.raises(subprocess.TimeoutExpired):   # serve waits for the lock, within its bound
                proc.wait(timeout=0.5)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    added = refused_calls(archive)[before:]
    archive.close()
    assert [e.get("claimed_station") for e in added] == ["st-ghost"], stderr
    assert "not registered with this archive" in added[0]["reason"]


@pytest.mark.parametrize("blob_kind", ["disk"])   # SQLite: the scaled kind is the test above
def test_a_refusal_still_held_up_when_the_server_stops_is_logged_as_not_written(archive, monkeypatch, caplog):
    """The stop waits only so long (refusals.SETTLE_S) for the writer lock; then it says which entries are lost."""
    from central.server import build_server
    from tests.central.test_auth import _writer_lock_held

    monkeypatch.setattr(refusals, "SETTLE_S", 0.2)
    before = len(refused_calls(archive))
    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    with _writer_lock_held(archive), caplog.at_level(logging.ERROR, logger="quire.central"):
        refuse(archive, f"127.0.0.1:{port}", signed(nacl.signing.SigningKey.generate(), station_id="st-ghost"))
        server.stop(grace=None).wait()
    assert len(refused_calls(archive)) == before
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith("refusal entries not written to the audit log (1)"), line
    assert "call.refused" in line and "by peer:ipv4:127.0.0.1" in line
