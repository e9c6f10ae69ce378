"""Several archive processes are one archive: three real `quire-central serve` processes on one PostgreSQL
catalogue (a private cluster) and one SeaweedFS bucket, stations syncing through all three from an
address list. A process killed -9 mid-upload and another mid-commit, the database killed -9 and started
again mid-sync, the object store stopped and started again, two processes committing one bundle at the
same moment: every bundle lands once, with one audit entry, `verify` and `audit verify` pass, and every
receipt checks against the one log.

The cluster, the object store and the three processes are started once for the module (each test
restarts what the one before it killed); the module's tests run on one xdist worker (conftest groups
modules with a module fixture)."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import grpc
import psycopg
import pytest

from central import config as central_config
from central import profile, stations
from central.archive import open_archive
from central.audit import verify_log
from central.store import audit_log
from central.verify import verify
from quire import checkpoint as checkpoint_format
from quire import manifest as manifest_format
from quire import merkle
from quire import receipt as receipt_format
from quire.v1 import sync_pb2
from station import outbox
from station.enrol import enroll
from station.scan import scan
from station.sync import _Backoff, _resume_points, _Session, _streams
from tests import conftest
from tests.childserver import ChildServer
from tests.conftest import TEST_PROFILE, make_station, run_cli, write_test_profile
from tests.netfaults import FaultyProxy
from tests.pgcluster import PgCluster
from tests.s3server import SeaweedS3

PROCESSES = 3


class ServeProcess(ChildServer):
    """One `quire-central serve` on a home of its own (a machine); its port kept across restarts, its
    PostgreSQL connections named quire-serve-N (libpq's PGAPPNAME), so a test can see what each one waits on."""

    what = "quire-central serve"

    def __init__(self, home: Path, n: int):
        super().__init__(home.parent / f"serve-{n}", home.parent / f"serve-{n}" / "serve.log")
        self.root.mkdir(parents=True, exist_ok=True)
        self.home, self.n, self.listen = home, n, "127.0.0.1:0"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).parent / "quire-central"), "--home", str(self.home), "serve",
                "--listen", self.listen, "--no-advertise"]

    def popen_options(self) -> dict:
        return {"env": {**os.environ, "PGAPPNAME": f"quire-serve-{self.n}"}}

    def ready(self) -> bool:
        found = re.findall(r"listening on (\S+)", self.log.read_text(errors="replace"))
        if len(found) < self.starts:
            return False
        self.address = self.listen = found[-1]
        return True

    def start(self) -> "ServeProcess":
        self.starts = getattr(self, "starts", 0) + 1
        self.launch(120)
        conftest._SESSION_CHILDREN.add(self.proc.pid)
        return self


INSTALLED = ("keys", "tls", "profiles", "central.toml", "s3.toml")   # what an operator copies to each machine


class Scaled:
    """The module's one archive: the operator's home it was made in, a home of its own per process (as on
    machines of their own: a copy of what is INSTALLED, nothing else shared but the database and the
    bucket), the database, the bucket, the processes and a proxy in front of each."""

    def __init__(self, root: Path):
        self.root, self.serves, self.proxies, self.homes = root, [], [], []
        self.pg = PgCluster().start()
        self.s3 = SeaweedS3(root / "seaweedfs")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        root = self.root
        self.s3.start()
        self.url = self.pg.create_database()
        self.home = root / "central"
        write_test_profile(self.home)
        self.s3.credentials_file(self.home / "s3.toml")
        (self.home / "central.toml").write_text(
            f'catalogue = "{self.url}"\nblobs = "s3://{self.s3.bucket}/{uuid.uuid4().hex}"\n'
            'blobs_credentials = "s3.toml"\n')
        with self.archive(create=True) as archive:
            profile.set_default(archive, TEST_PROFILE)
        for n in range(PROCESSES):
            self.homes.append(self._install(root / f"machine-{n}"))
            self.serves.append(ServeProcess(self.homes[-1], n).start())
            self.proxies.append(FaultyProxy(self.serves[-1].address))
        self.children()

    def _install(self, home: Path) -> Path:
        """A machine's home: the archive's keys, TLS identity, profiles, central.toml and bucket credentials."""
        home.mkdir()
        for name in INSTALLED:
            if (self.home / name).is_dir():
                shutil.copytree(self.home / name, home / name)
            else:
                shutil.copy2(self.home / name, home / name)
        return home

    def children(self) -> None:
        """The servers this module keeps running are not any one test's leak."""
        conftest._SESSION_CHILDREN.update(p.proc.pid for p in (self.pg, self.s3, *self.serves) if p.proc)

    @contextmanager
    def archive(self, create: bool = False):
        archive = open_archive(central_config.load(self.home), create=create)
        try:
            yield archive
        finally:
            archive.close()

    def ready(self) -> None:
        """Everything running again and no throttle left by the test before."""
        if self.pg.proc is None or self.pg.proc.poll() is not None:
            self.pg.start()
        if self.s3.proc is None or self.s3.proc.poll() is not None:
            self.s3.start()
        for serve, proxy in zip(self.serves, self.proxies):
            if serve.proc is None or serve.proc.poll() is not None:
                serve.start()
                proxy.retarget(serve.address)
            proxy.rate = None
        self.children()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        for serve in self.serves:
            serve.stop()
        self.s3.stop()
        self.pg.remove()


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    archive = Scaled(tmp_path_factory.mktemp("scaleout"))
    yield archive
    archive.close()


@pytest.fixture
def cluster(scaled):
    scaled.ready()
    return scaled


def _station(tmp_path: Path, scaled: Scaled, **settings):
    """A station whose station.toml lists the three processes (through their proxies), registered and enrolled."""
    station_id = f"st-{uuid.uuid4().hex[:8]}"
    home = tmp_path / station_id
    home.mkdir()
    listed = ", ".join(f'"{p.address}"' for p in scaled.proxies)
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (home / "station.toml").write_text(f"central = [{listed}]\nzeroconf_interfaces = [\"127.0.0.1\"]\n"
                                       "sync_timeout_s = 20.0\nbackoff_base_s = 0.2\nbackoff_max_s = 1.0\n"
                                       "sync_retry_span_s = 120.0\n" + extra)
    st = make_station(home, station_id=station_id)
    with scaled.archive() as archive:
        stations.add(archive, station_id, st.public_key.hex(), "unit-a")
    assert enroll(st, st.config.central).state == "approved"
    return st


def _scan(st, dossier: str, items: list[str], sheets: int = 1) -> int:
    """Seal one bundle per item; the bytes of their pages."""
    for item in items:
        scan(st, {"archive_no": dossier}, {"item": item, "title": f"t {item}"},
             f"synthetic:seed={abs(hash((st.station_id, item))) % 10_000},sheets={sheets}")
    return sum(p["bytes"] for b in st.store.batches("sealed") for p in st.store.pages(b["id"]))


def _sync(st) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "quire-station"), "--home", str(st.config.home),
                             "sync"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, bundles: int, timeout_s: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert f"committed {bundles} bundle(s)" in out, out
    return out


def _retried(st) -> int:
    """Sends of the station's bundles that failed and were tried again (the fault was felt)."""
    return sum(b["attempts"] - 1 for b in outbox.bundles(st.store))


def _wait_for(cond, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not (found := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return found


def _check(scaled: Scaled, *sts) -> None:
    """Each station's bundles in the catalogue once, with their pages and one ingest entry each; the
    archive verifies, its log recomputes, and every receipt the stations hold checks against that log."""
    with scaled.archive() as archive:
        for st in sts:
            sealed = {b["archive_no"] + "/" + b["item"]: [(p["n"], p["sha256"]) for p in st.store.pages(b["id"])]
                      for b in st.store.batches("sealed")}
            ids = sorted(b["id"] for b in outbox.bundles(st.store))
            landed = archive.catalogue.query("SELECT b.id, m.archive_no, m.item, m.id AS material FROM bundles b "
                                             "JOIN materials m ON m.bundle_id = b.id WHERE b.station_id = :s",
                                             {"s": st.station_id})
            assert sorted(r["id"] for r in landed) == ids, "a bundle missing or catalogued twice"
            stored = {}
            for row in landed:
                pages = archive.catalogue.query("SELECT n, sha256 FROM pages WHERE material_id = :m ORDER BY n",
                                                {"m": row["material"]})
                stored[row["archive_no"] + "/" + row["item"]] = [(p["n"], p["sha256"]) for p in pages]
            assert stored == sealed
            for bundle_id in ids:
                entries = audit_log.of_events(archive.catalogue, ("ingest",), bundle_id)
                assert len(entries) == 1, f"bundle {bundle_id[:12]}: {len(entries)} ingest entries"
        report = verify(archive)
        assert report.ok, report.problems
        log = verify_log(archive)
        assert log.ok, log.problems
        tree = merkle.MemoryTree([merkle.leaf_hash(bytes(e["entry"])) for e in audit_log.entries(archive.catalogue)])
        for st in sts:
            for kept in outbox.receipts(st.store):
                body = receipt_format.verify(bytes(kept["receipt"]), bytes(kept["receipt_signature"]),
                                             archive.public_key, kept["id"])
                cp = checkpoint_format.from_json(body["audit"]["checkpoint"])
                checkpoint_format.verify(cp, archive.public_key)
                assert tree.root(cp.tree_size) == cp.root_hash, f"receipt of {kept['id'][:12]} off the log"
                index = body["audit"]["entry"]
                assert index < cp.tree_size
                assert merkle.verify_inclusion(tree.perfect(0, index), index, cp.tree_size,
                                               tree.inclusion_proof(index, cp.tree_size), cp.root_hash)
                entry = json.loads(audit_log.entry_bytes(archive.catalogue, index))
                assert entry["event"] == "ingest" and entry["bundle_id"] == kept["id"]
    for serve in scaled.serves:
        assert "Traceback" not in serve.log.read_text(errors="replace"), serve.tail()


def test_two_stations_sync_through_all_three_and_a_process_killed_mid_upload_is_resumed_elsewhere(
        tmp_path, cluster):
    sts = [_station(tmp_path, cluster, dpi=300, chunk_bytes=65536) for _ in range(2)]
    try:
        total = sum(_scan(st, f"D-U{n}", ["1-1", "1-2"], sheets=2) for n, st in enumerate(sts))
        for proxy in cluster.proxies:
            proxy.rate = 1_000_000   # bytes/s a connection: the uploads take seconds, time for the kill to land
        before = [p.upstream_bytes for p in cluster.proxies]
        syncs = [_sync(st) for st in sts]
        try:
            _wait_for(lambda: sum(p.upstream_bytes for p in cluster.proxies) - sum(before) > total // 3,
                      "a third of the pages uploaded")
            moving = [p.upstream_bytes for p in cluster.proxies]
            time.sleep(0.3)
            victim = max(range(PROCESSES), key=lambda n: cluster.proxies[n].upstream_bytes - moving[n])
            assert all(s.poll() is None for s in syncs), "the syncs finished before a process could be killed"
            cluster.serves[victim].kill()
            for sync in syncs:
                _finish(sync, 2)
        finally:
            for sync in syncs:
                if sync.poll() is None:
                    sync.kill()
                    sync.communicate()
        carried = [p.upstream_bytes - b for p, b in zip(cluster.proxies, before)]
        # the stations spread their uploads (which process a bundle lands on is the stations' choice, so
        # under load one process may get only a little), and the one killed was carrying uploads
        assert sum(c > 100_000 for c in carried) >= 2, carried
        assert carried[victim] > 0, carried
        for st in sts:
            assert outbox.pending(st.store) == []
        assert sum(_retried(st) for st in sts) >= 1   # a Write cut by the kill, sent again elsewhere
        _check(cluster, *sts)
    finally:
        for st in sts:
            st.close()


@contextmanager
def _materials_locked(url: str):
    """Hold materials against writes (EXCLUSIVE: reads go on) from outside the archive: a Commit that
    catalogues a material waits inside its transaction until this ends."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE materials IN EXCLUSIVE MODE")
        yield conn
        conn.rollback()


def _waiting_on_a_lock(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND application_name LIKE 'quire-serve-%'")]


def test_a_process_killed_mid_commit_leaves_the_bundle_committed_once_by_another(tmp_path, cluster):
    st = _station(tmp_path, cluster, dpi=150)
    try:
        _scan(st, "D-C", ["1-1"])
        with _materials_locked(cluster.url):
            sync = _sync(st)
            try:
                waiting = _wait_for(lambda: _waiting_on_a_lock(cluster.url), "a Commit waiting inside its transaction")
                victim = int(waiting[0].rsplit("-", 1)[1])
                cluster.serves[victim].kill()   # mid-commit: its transaction holds the dossier row, not yet the material
            except BaseException:
                sync.kill()
                sync.communicate()
                raise
        out = _finish(sync, 1)
        assert outbox.pending(st.store) == [] and _retried(st) >= 1   # the Commit cut, and sent again

        _check(cluster, st)
        with cluster.archive() as archive:
            assert archive.catalogue.query("SELECT COUNT(*) AS n FROM dossiers WHERE archive_no = 'D-C'") == [{"n": 1}]
        assert "committed 1 bundle(s)" in out
    finally:
        st.close()


def _interrupted_mid_sync(st, cluster, archive_no: str, what: str, interrupt) -> None:
    """Scan three materials, start a sync through all three processes, call ``interrupt`` once a third of
    the pages have gone up, and check that the station retried and the archive holds every bundle once."""
    try:
        total = _scan(st, archive_no, ["1-1", "1-2", "1-3"], sheets=2)
        for proxy in cluster.proxies:
            proxy.rate = 1_500_000
        before = sum(p.upstream_bytes for p in cluster.proxies)
        sync = _sync(st)
        try:
            _wait_for(lambda: sum(p.upstream_bytes for p in cluster.proxies) - before > total // 3,
                      "a third of the pages uploaded")
            assert sync.poll() is None, f"the sync finished before {what} could be interrupted"
            interrupt()
            cluster.children()
            _finish(sync, 3)
        finally:
            if sync.poll() is None:
                sync.kill()
                sync.communicate()
        assert _retried(st) >= 1
        _check(cluster, st)
    finally:
        st.close()


def test_the_database_killed_and_started_again_mid_sync(tmp_path, cluster):
    def kill_and_start():
        cluster.pg.kill()
        # Down until a call has failed for it (every signed call records its nonce in the database), so the
        # station has felt the fault and backs off; then up again while the sync still runs.
        _wait_for(lambda: _retried(st) >= 1, "a call to fail while the database is down", 60)
        cluster.pg.start()

    st = _station(tmp_path, cluster, dpi=300, chunk_bytes=65536)
    _interrupted_mid_sync(st, cluster, "D-P", "the database", kill_and_start)
    assert all(s.proc.poll() is None for s in cluster.serves), "a process did not outlive its database"


def test_the_object_store_stopped_and_started_again_mid_sync(tmp_path, cluster):
    def stop_and_start():
        cluster.s3.stop()
        time.sleep(2.0)
        cluster.s3.start()

    _interrupted_mid_sync(_station(tmp_path, cluster, dpi=300, chunk_bytes=65536), cluster, "D-S", "the object store",
                          stop_and_start)


def _upload_without_commit(st, address: str) -> str:
    """Offer the station's one sealed bundle to the process at ``address`` and upload its pages; no Commit."""
    session = _Session(st, address, _Backoff(st.config, time.sleep))
    try:
        session.central_key = session._greet()
        bundle = outbox.pending(st.store)[0]
        offer = session.stub.Offer(sync_pb2.OfferRequest(station_id=st.station_id, manifest=bundle["manifest"],
                                                         signature=bundle["signature"]), timeout=30)
        pages = {p["sha256"]: p for p in manifest_format.blobs(json.loads(bundle["manifest"]))}
        for group in _streams([(pages[sha], offset) for sha, offset in _resume_points(offer)]):
            session._upload(bundle["id"], group, [0])
        return bundle["id"]
    finally:
        session.close()


def test_two_processes_committing_the_same_bundle_at_the_same_moment_catalogue_it_once(tmp_path, cluster):
    st = _station(tmp_path, cluster, dpi=150)
    try:
        _scan(st, "D-T", ["1-1"])
        bundle_id = _upload_without_commit(st, cluster.serves[0].address)
        sessions = [_Session(st, cluster.serves[n].address, _Backoff(st.config, time.sleep)) for n in (1, 2)]
        answers: list = [None, None]
        start = threading.Barrier(2)

        def commit(n: int) -> None:
            start.wait()
            try:
                answers[n] = sessions[n].stub.Commit(sync_pb2.CommitRequest(station_id=st.station_id,
                                                                            bundle_id=bundle_id), timeout=60).receipt
            except grpc.RpcError as exc:
                answers[n] = exc

        try:
            # Both Commits are in before either can write: the first to take the catalogue's write lock
            # catalogues the bundle, the other finds it committed and answers with the same receipt.
            with _materials_locked(cluster.url):
                threads = [threading.Thread(target=commit, args=(n,)) for n in (0, 1)]
                for t in threads:
                    t.start()
                _wait_for(lambda: len(_waiting_on_a_lock(cluster.url)) == 2, "both Commits waiting on the catalogue")
            for t in threads:
                t.join(60)
        finally:
            for s in sessions:
                s.close()
        assert all(isinstance(a, sync_pb2.SignedReceipt) for a in answers), answers
        assert answers[0].receipt == answers[1].receipt and answers[0].signature == answers[1].signature
        with cluster.archive() as archive:
            body = receipt_format.verify(answers[0].receipt, answers[0].signature, archive.public_key, bundle_id)
            outbox.mark_committed(st.store, bundle_id, answers[0].receipt, answers[0].signature)
            assert body["bundle_id"] == bundle_id
            assert archive.catalogue.query("SELECT COUNT(*) AS n FROM materials WHERE bundle_id = :b",
                                           {"b": bundle_id}) == [{"n": 1}]
        _check(cluster, st)
    finally:
        st.close()


def test_afterwards_the_cli_checks_pass_on_every_process_home(cluster):
    """What an operator runs after an incident, on any machine: `verify` and `audit verify`; and no process
    kept anything in its home beyond what was installed there (its state is in the database and the bucket)."""
    for home in cluster.homes:
        assert sorted(p.name for p in home.iterdir()) == sorted(INSTALLED), f"{home} holds more"
    assert "— OK" in run_cli("quire-central", "--home", cluster.homes[0], "verify").stdout
    assert "— OK" in run_cli("quire-central", "--home", cluster.homes[-1], "audit", "verify").stdout
