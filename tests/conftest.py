"""Shared fixtures: a private SANE config with the `test` backend, real central servers on
loopback port 0, initialised stations on real SQLite files, and a check for leaked threads."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

@pytest.fixture(scope="session", autouse=True)
def sane_config_dir(tmp_path_factory):
    """SANE_CONFIG_DIR whose dll.conf lists only `test`, set before libsane is first loaded."""
    path = tmp_path_factory.mktemp("sane")
    (path / "dll.conf").write_text("test\n")
    os.environ["SANE_CONFIG_DIR"] = str(path)
    return path


# Under pytest-xdist (`make test` runs `pytest -n N --dist loadgroup`) every worker is a process of its own
# with its own session fixtures and temporary folders. What two workers must not do at the same moment
# goes in one xdist group, run by one worker one test after another:
_EXCLUSIVE = {
    # Loop devices, cgroup v1 blkio throttle rules and cpu quotas are the machine's, not a process's (the
    # station bench asserts that no loop device keeps a throttle rule once it is done), and benchmarks
    # measured beside each other measure each other.
    "machine": ("tests/bench/", "tests/station/test_spool_budget.py"),
    # Zeroconf on 127.0.0.1 is one network for every worker. `quire-central serve` announces itself as
    # quire-central-HOSTNAME: two at once claim the same DNS-SD name, and a station resolving it may get
    # the other archive. The station daemons that announce themselves here are all st-test.
    "zeroconf": ("tests/station/test_discovery.py", "tests/test_end_to_end.py",
                 "tests/station/test_daemon.py::test_the_service_announces_itself_on_zeroconf"),
}


@pytest.fixture(scope="session", autouse=True)
def opencv_as_the_station_runs_it():
    """The pages a test scans in this process go through OpenCV as in the station's own process: one
    thread per call (quire.threads), the station's pipeline workers being the parallelism. The suite's
    workers already fill the cores; OpenCV's own threads on top only cost CPU."""
    from quire.threads import limit_opencv_threads

    limit_opencv_threads()


@pytest.fixture(scope="session", autouse=True)
def synthetic_pages_rendered_once(tmp_path_factory):
    """Each synthetic sheet a test scans in this process is drawn once per run: render_sheet's pages are
    kept on disk, keyed by its arguments and the renderer's own source, and every worker reads them back
    (a 300 dpi sheet takes about a second of CPU to draw, its pickle milliseconds to read). The same
    pixels and truth either way; the renderer's own tests (_RENDERED_FRESH) draw theirs."""
    import hashlib
    import pickle

    from station.capture import synthetic

    run_dir = tmp_path_factory.getbasetemp()
    folder = (run_dir.parent if os.environ.get("PYTEST_XDIST_WORKER") else run_dir) / "synthetic-sheets"
    folder.mkdir(exist_ok=True)
    source = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()
    render = synthetic.render_sheet

    def render_sheet(*args, **kw):
        if _rendering["fresh"]:
            return render(*args, **kw)
        key = hashlib.sha256(repr((source, args, sorted(kw.items()))).encode()).hexdigest()[:32]
        kept = folder / f"{key}.pickle"
        try:
            return pickle.loads(kept.read_bytes())
        except FileNotFoundError:
            pages = render(*args, **kw)
            if _bytes_in(folder) < _SHEETS_KEPT_BYTES:
                write_atomically(kept, pickle.dumps(pages, protocol=pickle.HIGHEST_PROTOCOL))
            return pages

    synthetic.render_sheet = render_sheet
    yield
    synthetic.render_sheet = render


_RENDERED_FRESH = ("tests/station/capture/test_synthetic.py",)
# At most this much of the run's temporary folder holds kept sheets (a CI runner's disk is small); sheets
# past it are drawn each time.
_SHEETS_KEPT_BYTES = 3 * 2**30
_rendering = {"fresh": False}


def _bytes_in(folder: Path) -> int:
    """The bytes of the files in ``folder`` (one another worker renames or removes meanwhile counts 0)."""
    total = 0
    for entry in os.scandir(folder):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:
            pass
    return total


def pytest_runtest_setup(item):
    _rendering["fresh"] = item.nodeid.startswith(_RENDERED_FRESH)


def pytest_sessionfinish(session):
    """The kept sheets (about 60 MB each at 300 dpi) go when the run ends: by the one process, or by
    pytest-xdist's controller once every worker is done."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        import shutil

        shutil.rmtree(session.config._tmp_path_factory.getbasetemp() / "synthetic-sheets", ignore_errors=True)


# The longest units of work (an xdist group, or a test on its own), longest first, as the CI runs timed
# them (--durations; tens of seconds each under load). pytest-xdist hands units out in collection order;
# one of these collected late would run alone at the end while the other workers idle, so they go first
# and the many short tests fill the workers around them. A unit missing here only runs later, never wrongly.
_LONG_FIRST = (
    "machine",    # the benches and the spool's power cuts, one after another on one worker
    "zeroconf",   # the demo twice, the CLI end to end, discovery
    "tests/central/test_scaleout.py",
    "tests/central/test_replica_drill.py::test_disaster_drill",
    "tests/test_sync_faults.py::test_kill_minus_nine_during_scan_and_sync_loses_and_duplicates_nothing",
    "tests/station/test_coversheet_split.py::test_a_dossier_feed_killed_mid_material",
    "tests/station/test_coversheet_split.py::test_a_jam_mid_feed",
    "tests/station/pipeline/test_marks.py::test_a_speckled_page",
    "tests/station/test_scan_sane.py::test_scanner_faults_over_and_over",
    "tests/central/test_migrate.py",
    "tests/central/test_seal.py",
    "tests/test_sync_rollback.py::test_an_archive_restored_from_an_older_copy",
    "tests/central/test_stats.py::test_charts_are_written",
    "tests/test_sync_retry.py::test_the_daemon_rides_out_an_archive_restart",
    "tests/station/test_coversheet_split.py",
)


def pytest_configure(config):
    """The order of the units is _LONG_FIRST's, not pytest-xdist's default (most tests per group first, which
    sends a long test on its own to the end)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Put each test in its xdist group: the exclusive ones above, and a module whose tests share a fixture
    built once per module (a synced archive, a browser, rendered pages) stays on one worker, so that
    fixture is built once, not once per worker. Then the long units go first (_LONG_FIRST). First of the
    hooks: pytest-xdist's own (registered after this file) reads the groups into the test ids after it.
    (pytest stays below 9.2, where pytest-xdist 3.8 can no longer put the group in the id: pyproject.toml.)"""
    rank = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = next((name for name, prefixes in _EXCLUSIVE.items() if item.nodeid.startswith(prefixes)), None)
        if group is None and _uses_module_fixture(item):
            group = path
        unit = group or item.nodeid
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        rank[item.nodeid] = next((i for i, long in enumerate(_LONG_FIRST) if unit.startswith(long)),
                                 len(_LONG_FIRST))
    items.sort(key=lambda item: rank[item.nodeid])  # stable: the rest stay in collection order


def _uses_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return bool(info) and any(defs and defs[-1].scope in ("module", "class", "package")
                              for defs in info.name2fixturedefs.values())


def _children() -> set[int]:
    """This process's live child processes (zombies reaped by their owner later are not counted)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            found |= {int(pid) for pid in (task / "children").read_text().split()}
        except OSError:
            continue
    return {pid for pid in found if _state(pid) not in ("Z", "X", None)}


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _sockets() -> set[str]:
    """The sockets this process holds open, by inode."""
    held = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            held.add(target)
    return held


# Process-wide pools started once and kept for the life of the process, by thread-name prefix: the
# archive's blob writers, and gRPC's own C-core pollers that outlive any one server or channel.
_KEPT_THREADS = ("quire-write_",)
# Servers started once for the session (the S3 store): their processes are not a test's leak.
_SESSION_CHILDREN: set[int] = set()


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves threads (daemon ones too: the archive's background threads are),
    child processes or sockets of its own behind."""
    threads, children, sockets = set(threading.enumerate()), _children(), _sockets()
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked_threads = [t.name for t in threading.enumerate() if t not in threads and t.is_alive()
                          and not t.name.startswith(_KEPT_THREADS)]
        leaked_children = sorted(_children() - children - _SESSION_CHILDREN)
        leaked_sockets = sorted(_sockets() - sockets)
        if not (leaked_threads or leaked_children or leaked_sockets) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked_threads, f"test leaked threads: {leaked_threads}"
    assert not leaked_children, f"test left child processes running: {leaked_children}"
    assert not leaked_sockets, f"test left sockets open: {leaked_sockets}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible store (SeaweedFS ``weed mini``) on 127.0.0.1, started once for the session."""
    from tests.s3server import SeaweedS3

    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    _SESSION_CHILDREN.add(server.proc.pid)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL cluster (Debian's server, initdb in a temporary folder, Unix socket only),
    started once for the session; ``pg_cluster.conninfo`` connects psycopg to it."""
    from tests.pgcluster import PgCluster

    cluster = PgCluster().start()
    _SESSION_CHILDREN.add(cluster.proc.pid)
    yield cluster
    cluster.remove()


@pytest.fixture(scope="session")
def pg_catalogue_template(pg_cluster):
    """A database with every catalogue migration applied, made once per session: each test's catalogue
    database is a copy of it (the migrations themselves are tested on fresh databases in test_postgres)."""
    from central.store.postgres import PostgresCatalogue

    url = pg_cluster.create_database()
    PostgresCatalogue(url).close()
    return url.rsplit("/", 1)[1]


@pytest.fixture
def blob_kind():
    """The storage kind of the ``archive`` fixture: "disk" (the embedded default: an SQLite file and the
    home's blobs folder), "scaled" (a fresh PostgreSQL database in the session's cluster and a fresh prefix
    in the session's SeaweedFS bucket) or "s3" (SQLite, blobs in the bucket: for the SQLite-only features).
    QUIRE_TEST_BLOBS=scaled runs every archive test scaled; a module overrides this fixture
    (params=["disk", "scaled"]) to run on both."""
    return os.environ.get("QUIRE_TEST_BLOBS", "disk")


TEST_PROFILE = "tests-150dpi"


def write_test_profile(home: Path) -> None:
    """Put in the archive home the standards profile tests make its default: gbt33870 with the minimum
    lowered to 150 dpi, so tests may scan small, fast pages."""
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / f"{TEST_PROFILE}.toml").write_text(
        f'format = "quire.profile/1"\nname = "{TEST_PROFILE}"\nversion = 1\nextends = "gbt33870"\n'
        'title = "gbt33870 at 150 dpi, for fast tests"\n[resolution]\nmin_dpi = 150\n')


def use_blob_kind(home: Path, kind: str, request) -> None:
    """Write the archive config at ``home`` that puts its catalogue and blobs in ``kind`` of storage."""
    lines = []
    if kind in ("s3", "scaled"):
        s3 = request.getfixturevalue("s3_server")
        s3.credentials_file(home / "s3.toml")
        lines += [f'blobs = "s3://{s3.bucket}/{uuid.uuid4().hex}"', 'blobs_credentials = "s3.toml"']
    if kind == "scaled":
        template = request.getfixturevalue("pg_catalogue_template")
        lines.append(f'catalogue = "{request.getfixturevalue("pg_cluster").create_database(template)}"')
    elif kind not in ("disk", "s3"):
        raise ValueError(f"unknown storage kind {kind!r}: disk, s3 or scaled")
    if lines:
        (home / "central.toml").write_text("\n".join(lines) + "\n")


class BehindTheArchive:
    """A connection straight to an archive's catalogue — its SQLite file, or its PostgreSQL database as
    the database's owner — as someone who edits it without the service would; ``?`` placeholders on both."""

    def __init__(self, archive):
        self.url = archive.config.catalogue
        if self.url:
            import psycopg

            self.conn = psycopg.connect(self.url)
        else:
            self.conn = sqlite3.connect(archive.config.db_path)

    def execute(self, sql: str, params=()):
        if self.url:
            from central.store.postgres import to_pyformat

            return self.conn.execute(to_pyformat(sql), params)
        return self.conn.execute(sql, params)

    def drop_append_only(self) -> None:
        """Remove the triggers that keep the audit log append-only (and, as on a plain SQLite connection,
        leave foreign keys unchecked)."""
        if self.url:
            self.conn.execute("SET session_replication_role = replica")
        for table in ("audit_entries", "audit_nodes", "audit_checkpoints"):
            for op in ("update", "delete"):
                on = f" ON {table}" if self.url else ""
                self.conn.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{op}{on}")


@contextmanager
def behind_the_archive(archive) -> Iterator[BehindTheArchive]:
    """``BehindTheArchive`` of ``archive``, its edits committed at the end of the block."""
    raw = BehindTheArchive(archive)
    try:
        yield raw
        raw.conn.commit()
    finally:
        raw.conn.close()


@pytest.fixture
def archive(tmp_path, blob_kind, request):
    """A central archive on the storage of ``blob_kind`` (real SQLite file or PostgreSQL database, folder or bucket).

    Its default standards profile is gbt33870 with the minimum lowered to 150 dpi, so tests may
    scan small, fast pages; tests of the standards themselves assign a shipped profile to their unit.
    """
    from central import config, profile
    from central.archive import open_archive

    home = tmp_path / "central"
    write_test_profile(home)
    use_blob_kind(home, blob_kind, request)
    arch = open_archive(config.load(home))
    profile.set_default(arch, TEST_PROFILE)
    yield arch
    arch.close()


@pytest.fixture
def central(archive):
    """A real gRPC central server on 127.0.0.1, port 0; yields (archive, 'HOST:PORT')."""
    from central.server import build_server

    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    yield archive, f"127.0.0.1:{port}"
    server.stop(grace=None).wait()


def make_station(home: Path, central_address: str | None = None, station_id: str = "st-test", **cfg):
    from station import config, home as station_home

    home.mkdir(parents=True, exist_ok=True)
    cfg.setdefault("zeroconf_interfaces", ["127.0.0.1"])  # a moved archive is looked for on loopback only
    return station_home.init(config.load(home, central=central_address, **cfg), station_id)


def register(archive, address: str, station, unit: str = "unit-a"):
    """Register a station's key with the archive (admin path) and let it pin the archive (enrol)."""
    from central import stations
    from station.enrol import enroll

    stations.add(archive, station.station_id, station.public_key.hex(), unit)
    assert enroll(station, address).state == "approved"
    return station


@pytest.fixture
def station_dpi() -> int:
    """The dpi the `station` fixture scans at: 150, the test archive's minimum (a quarter of 300 dpi's pixels
    to draw, process, store and send). A module whose pages must be bigger overrides this fixture."""
    return 150


@pytest.fixture
def station(tmp_path, central, station_dpi):
    """An initialised station, registered with the `central` fixture's archive and pinned to it."""
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "station", address, dpi=station_dpi))
    yield st
    st.close()


def read_frozen(proc: subprocess.Popen, read):
    """Stop ``proc`` (SIGSTOP; it stays stopped) and return ``read()`` of its database, or None when the read
    met the frozen writer's WAL index mid-update (sqlite3 "locking protocol"): resume it and try again."""
    proc.send_signal(signal.SIGSTOP)
    try:
        return read()
    except sqlite3.OperationalError:
        return None


def wait_until(condition, what: str, timeout_s: float = 30) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.02)


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed over it: another worker (or git) reading
    ``path`` meanwhile sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def run_cli(tool: str, *args, env=None, check=True, **kw) -> subprocess.CompletedProcess:
    """Run quire-station / quire-central as a real subprocess of this interpreter's environment."""
    exe = Path(sys.executable).parent / tool
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def cli_in_process(tool: str, *args, env=None, check=True) -> subprocess.CompletedProcess:
    """Run quire-station / quire-central's main() in this process, as run_cli does in a child: the same
    arguments, environment additions, exit code and printed text, without a second of interpreter start-up."""
    import contextlib
    import importlib
    import io

    main = importlib.import_module({"quire-station": "station.cli", "quire-central": "central.cli"}[tool]).main
    out, err, saved = io.StringIO(), io.StringIO(), {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*map(str, args)]) or 0
            except SystemExit as exc:  # argparse's refusals
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    proc = subprocess.CompletedProcess([tool, *map(str, args)], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{tool} {' '.join(map(str, args))} exited {code}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem (tmpfs) with room to spare, and a way to fill it up and free it."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], check=True)

    class Disk:
        path = mount
        filler = mount / "filler"

        def fill(self, leave_bytes: int):
            """Take up all but ``leave_bytes`` of the free space."""
            st = os.statvfs(mount)
            self.filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))

        def free(self):
            self.filler.unlink(missing_ok=True)

    yield Disk()
    subprocess.run(["umount", "-l", str(mount)], check=False)
