"""Several `quire-central serve` processes of one archive: a station configured with all of them spreads
its calls over them, and when one is killed mid-upload the upload resumes on another — nothing lost,
nothing duplicated."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from central import config as central_config
from central import profile, stations
from central.archive import open_archive
from central.verify import verify
from station import doctor, outbox
from station.enrol import enroll
from station.scan import scan
from tests.conftest import cli_in_process, make_station, use_blob_kind, write_test_profile
from tests.netfaults import FaultyProxy


class Serve:
    """One `quire-central serve` process on the archive home, its log in a file."""

    def __init__(self, home: Path, log: Path, listen: str = "127.0.0.1:0"):
        self.log = log
        exe = Path(sys.executable).parent / "quire-central"
        with open(log, "w") as err:
            self.proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--listen", listen,
                                          "--no-advertise"], stdout=subprocess.PIPE, stderr=err, text=True)
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), f"{line!r}: {log.read_text()}"
        self.address = line.removeprefix("listening on ")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture
def archive_home(tmp_path, blob_kind, request):
    """An archive home (blobs on disk, or in S3 under QUIRE_TEST_BLOBS=s3) with station st-fo registered."""
    home = tmp_path / "central"
    write_test_profile(home)
    use_blob_kind(home, blob_kind, request)
    return home


@pytest.fixture
def two_processes(archive_home, tmp_path):
    """Two serve processes of the one archive, each behind its own loopback proxy (a per-process byte
    counter, and a throttle so a kill lands mid-upload); yields (processes, proxies)."""
    servers, proxies = [], []
    try:
        for n in range(2):
            servers.append(Serve(archive_home, tmp_path / f"serve-{n}.log"))
        proxies = [FaultyProxy(s.address) for s in servers]
        yield servers, proxies
    finally:
        for proxy in proxies:
            proxy.close()
        for server in servers:
            server.stop()


def _station(tmp_path, archive_home, proxies, **settings):
    """A station whose station.toml lists both archive processes, registered and enrolled."""
    home = tmp_path / "st"
    home.mkdir()
    listed = ", ".join(f'"{p.address}"' for p in proxies)
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (home / "station.toml").write_text(f"central = [{listed}]\nzeroconf_interfaces = [\"127.0.0.1\"]\n"
                                       "sync_timeout_s = 5.0\nbackoff_base_s = 0.1\nbackoff_max_s = 0.5\n"
                                       "sync_retry_span_s = 60.0\n" + extra)
    st = make_station(home, station_id="st-fo")
    assert st.config.central == ",".join(p.address for p in proxies)
    archive = open_archive(central_config.load(archive_home))
    try:
        profile.set_default(archive, "tests-150dpi")
        stations.add(archive, "st-fo", st.public_key.hex(), "unit-a")
    finally:
        archive.close()
    assert enroll(st, st.config.central).state == "approved"
    return st


def _check_archive(archive_home, st) -> None:
    """Every sealed bundle is in the archive exactly once, with its pages; the archive verifies."""
    archive = open_archive(central_config.load(archive_home))
    try:
        sealed = {b["archive_no"] + "/" + b["item"]: [(p["n"], p["sha256"]) for p in st.store.pages(b["id"])]
                  for b in st.store.batches("sealed")}
        stored = {}
        for m in archive.catalogue.query("SELECT id, archive_no, item FROM materials"):
            rows = archive.catalogue.query("SELECT n, sha256 FROM pages WHERE material_id = ? ORDER BY n", [m["id"]])
            key = m["archive_no"] + "/" + m["item"]
            assert key not in stored, f"material {key} catalogued twice"
            stored[key] = [(r["n"], r["sha256"]) for r in rows]
        assert stored == sealed
        ids = [b["id"] for b in outbox.bundles(st.store)]
        landed = archive.catalogue.query("SELECT id FROM bundles")
        assert sorted(r["id"] for r in landed) == sorted(ids), "a bundle missing or received twice"
        report = verify(archive)
        assert report.ok, report.problems
    finally:
        archive.close()


def test_both_archive_processes_receive_calls(tmp_path, archive_home, two_processes):
    servers, proxies = two_processes
    st = _station(tmp_path, archive_home, proxies, dpi=150)
    try:
        for n in range(4):
            scan(st, {"archive_no": "D-S"}, {"item": f"1-{n + 1}", "title": "t"}, f"synthetic:seed={n},sheets=1")
        cli_in_process("quire-station", "--home", st.config.home, "sync")
        # Each proxy stands in front of one process: both carried calls, and not only the greeting.
        assert all(p.upstream_bytes > 20_000 for p in proxies), [p.upstream_bytes for p in proxies]
        status = json.loads(cli_in_process("quire-station", "--home", st.config.home, "status", "--json").stdout)
        assert status["central_answered"]["addresses"] == {p.address: "" for p in proxies}
        text = cli_in_process("quire-station", "--home", st.config.home, "status").stdout
        assert all(f"{p.address} answered" in text for p in proxies), text
        assert outbox.pending(st.store) == []
        _check_archive(archive_home, st)
    finally:
        st.close()


def test_an_upload_cut_by_a_killed_process_resumes_on_the_other(tmp_path, archive_home, two_processes):
    servers, proxies = two_processes
    for proxy in proxies:
        proxy.rate = 1_500_000  # bytes/s a connection: the upload takes seconds, time for the kill to land
    st = _station(tmp_path, archive_home, proxies, dpi=300, chunk_bytes=65536)
    try:
        scan(st, {"archive_no": "D-F"}, {"item": "1-1", "title": "t"}, "synthetic:seed=11,sheets=2")
        scan(st, {"archive_no": "D-F"}, {"item": "1-2", "title": "t"}, "synthetic:seed=12,sheets=2")
        total = sum(p["bytes"] for b in st.store.batches("sealed") for p in st.store.pages(b["id"]))
        sync_proc = subprocess.Popen([str(Path(sys.executable).parent / "quire-station"), "--home",
                                      str(st.config.home), "sync"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        try:
            # Kill, once a third of the pages has gone up, the process the upload stream is going to now.
            deadline = time.monotonic() + 60
            while sum(p.upstream_bytes for p in proxies) < total // 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            before = [p.upstream_bytes for p in proxies]
            time.sleep(0.2)
            moving = max(range(2), key=lambda n: proxies[n].upstream_bytes - before[n])
            assert sync_proc.poll() is None, "the sync finished before a process could be killed"
            servers[moving].kill()
            killed_got = proxies[moving].upstream_bytes
            survivor = proxies[1 - moving]
            survivor_before = survivor.upstream_bytes
            out, _ = sync_proc.communicate(timeout=180)
        finally:
            if sync_proc.poll() is None:
                sync_proc.kill()
                sync_proc.communicate()
        assert sync_proc.returncode == 0, out
        assert "committed 2 bundle(s)" in out, out
        # The survivor took the rest, not the whole again: what reached the killed process stays used.
        rest = survivor.upstream_bytes - survivor_before
        assert killed_got > 1_200_000, killed_got
        # (at most the chunks the killed process had read ahead but not yet written go again)
        assert rest < total - killed_got + 1_000_000, (rest, total, killed_got)
        assert outbox.pending(st.store) == []
        _check_archive(archive_home, st)
        # doctor names the process that answers and the one that does not
        check = doctor.check_central(st.config)
        assert check.level == "WARN", check
        assert f"{survivor.address} answers with the pinned key" in check.message
        assert proxies[moving].address in check.message.split("but", 1)[1]
    finally:
        st.close()


def test_a_bad_central_entry_is_named_with_what_to_write(tmp_path):
    home = tmp_path / "st"
    home.mkdir()
    (home / "station.toml").write_text('central = ["archive-1.example:7443", "archive-2.example"]\n')
    proc = cli_in_process("quire-station", "--home", home, "status", check=False)
    assert proc.returncode == os.EX_CONFIG, proc.stderr
    assert "central: entry 2 ('archive-2.example') must be HOST:PORT" in proc.stderr
    assert 'central = ["archive-1.example:7443", "archive-2.example:7443"]' in proc.stderr
    (home / "station.toml").write_text('central = "dns:///archive.example:7443"\n')
    proc = cli_in_process("quire-station", "--home", home, "status", check=False)
    assert proc.returncode == os.EX_CONFIG and "is a gRPC target, not HOST:PORT; write the name alone" in proc.stderr


@pytest.fixture
def another_archive(tmp_path):
    """A second, unrelated archive served on loopback port 0 (its own key and certificate)."""
    from central.server import build_server

    other = open_archive(central_config.load(tmp_path / "other"))
    server, port = build_server(other, "127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None).wait()
    other.close()


def test_enrolment_refuses_a_list_whose_addresses_present_different_certificates(tmp_path, central,
                                                                                 another_archive):
    from station.errors import CentralKeyMismatch

    archive, address = central
    st = make_station(tmp_path / "st", f"{address},{another_archive}", station_id="st-mixed")
    try:
        stations.add(archive, "st-mixed", st.public_key.hex(), "unit-a")
        with pytest.raises(CentralKeyMismatch, match="present different TLS certificates") as refused:
            enroll(st, st.config.central)
        assert address in str(refused.value) and another_archive in str(refused.value)
        assert st.store.get_meta("central_key") is None, "nothing may be pinned"
    finally:
        st.close()


def test_an_address_with_another_identity_is_never_used_and_doctor_names_it(tmp_path, central, another_archive):
    archive, address = central
    st = make_station(tmp_path / "st", address, station_id="st-pinned", dpi=150)
    try:
        stations.add(archive, "st-pinned", st.public_key.hex(), "unit-a")
        assert enroll(st, address).state == "approved"
        # Later the list names a second address where another archive answers: the pin holds there too.
        listed = st.config.model_copy(update={"central": f"{another_archive},{address}"})
        st.config = listed
        for n in range(3):
            scan(st, {"archive_no": "D-P"}, {"item": f"1-{n + 1}", "title": "t"}, f"synthetic:seed={n},sheets=1")
        from station.sync import sync

        report = sync(st)
        assert len(report.committed) == 3 and not report.failed
        assert report.answered[address] == "" and report.answered[another_archive]  # why it did not answer
        from central.verify import verify as verify_archive

        assert verify_archive(archive).ok
        check = doctor.check_central(listed)
        assert check.level == "FAIL" and another_archive in check.message and "not the one pinned" in check.message
    finally:
        st.close()


def test_the_daemon_logs_an_address_that_stopped_answering_once(tmp_path, central, caplog):
    import logging
    import socket

    from station.sync import sync
    from station.sync_worker import SyncWorker

    archive, address = central
    with socket.socket() as probe:            # a port nothing listens on: a process that is down
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    st = make_station(tmp_path / "st", f"{address},{dead}", station_id="st-daemon", dpi=150)
    try:
        stations.add(archive, "st-daemon", st.public_key.hex(), "unit-a")
        assert enroll(st, st.config.central).state == "approved"
        scan(st, {"archive_no": "D-W"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1")
        worker = SyncWorker(st.config, 60)
        with caplog.at_level(logging.INFO, logger="station.sync_worker"):
            worker._once(st, sync)
            worker._once(st, sync)
        assert worker.state == "central online" and outbox.pending(st.store) == []
        silent = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
        assert len(silent) == 1 and dead in silent[0] and "syncing through the others" in silent[0], silent
    finally:
        st.close()


def test_a_name_with_several_addresses_is_spread_over_all_of_them(tmp_path, archive_home):
    """One name, two addresses (127.0.0.1 and 127.0.0.2, the same port): the station resolves it in a
    mount namespace of its own whose /etc/hosts says so, and both processes receive pages (each
    address is a counting proxy in front of one process)."""
    hosts = tmp_path / "hosts"
    servers, proxies = [Serve(archive_home, tmp_path / "serve-0.log"),
                        Serve(archive_home, tmp_path / "serve-1.log")], []
    try:
        proxies.append(FaultyProxy(servers[0].address))
        port = proxies[0].address.rsplit(":", 1)[1]
        proxies.append(FaultyProxy(servers[1].address, listen=f"127.0.0.2:{port}"))
        hosts.write_text("127.0.0.1 localhost\n127.0.0.1 quire-archive.test\n127.0.0.2 quire-archive.test\n")
        home = tmp_path / "st"
        home.mkdir()
        (home / "station.toml").write_text(f'central = "quire-archive.test:{port}"\n'
                                           'zeroconf_interfaces = ["127.0.0.1"]\ndpi = 150\n')
        st = make_station(home, station_id="st-dns")
        archive = open_archive(central_config.load(archive_home))
        try:
            profile.set_default(archive, "tests-150dpi")
            stations.add(archive, "st-dns", st.public_key.hex(), "unit-a")
        finally:
            archive.close()
        try:
            for n in range(4):
                scan(st, {"archive_no": "D-N"}, {"item": f"1-{n + 1}", "title": "t"}, f"synthetic:seed={n},sheets=1")
            total = sum(p["bytes"] for b in st.store.batches("sealed") for p in st.store.pages(b["id"]))
            tool = Path(sys.executable).parent / "quire-station"

            def in_namespace(*args: str) -> str:
                script = f'mount --bind "{hosts}" /etc/hosts && exec "{tool}" --home "{home}" "$@"'
                proc = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *args],
                                      capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                return proc.stdout

            in_namespace("enroll")
            before = [p.upstream_bytes for p in proxies]
            out = in_namespace("sync")
            assert "committed 4 bundle(s)" in out, out
            got = [p.upstream_bytes - b for p, b in zip(proxies, before)]
            assert all(n > total // 5 for n in got), (got, total)   # pages reached both processes
            answered = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)
            assert answered["central_answered"]["addresses"] == {p.address: "" for p in proxies}
            _check_archive(archive_home, st)
        finally:
            st.close()
    finally:
        for proxy in proxies:
            proxy.close()
        for server in servers:
            server.stop()
