"""The catalogue on a real PostgreSQL server: migrations, one audit log for several processes, one row
for a bundle committed twice at once, no password in config, a server restart survived."""

import threading

import pytest

from central import audit, config, ingest, stations
from central.archive import open_archive
from central.errors import ConfigError, StoreUnavailable
from central.store import audit_log, blob_index
from central.store.catalogue import MIGRATIONS
from central.store.catalogues import open_catalogue
from central.store.postgres import PostgresCatalogue, to_pyformat
from quire import manifest as manifest_format
from station import outbox
from station.scan import scan
from tests.conftest import make_station
from tests.pgcluster import PgCluster


@pytest.fixture
def blob_kind():
    """Every archive here is scaled: a PostgreSQL catalogue, blobs in the S3 bucket."""
    return "scaled"


@pytest.fixture
def second(archive):
    """A second archive process's view of the same database and bucket (its own pool and connections)."""
    other = open_archive(config.load(archive.config.home), create=False)
    yield other
    other.close()


def _together(*jobs) -> list:
    """Run each job on its own thread, started at the same moment; their results (or exceptions)."""
    start, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i, job):
        start.wait()
        try:
            results[i] = job()
        except Exception as exc:   # handed back for the test to look at
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_named_parameters_become_psycopg_placeholders_and_nothing_else_moves():
    assert to_pyformat("SELECT * FROM t WHERE a = :a AND b::text = :b_2") == \
        "SELECT * FROM t WHERE a = %(a)s AND b::text = %(b_2)s"
    assert to_pyformat("SELECT ':not' || \"col:x\" FROM t WHERE n LIKE :p || '%' -- :c 5%") == \
        "SELECT ':not' || \"col:x\" FROM t WHERE n LIKE %(p)s || '%%' -- :c 5%%"
    assert to_pyformat("SELECT 'it''s :x' FROM t WHERE a = ? AND b = ?") == "SELECT 'it''s :x' FROM t WHERE a = %s AND b = %s"


def test_two_processes_starting_on_an_empty_database_migrate_it_once(pg_cluster):
    url = pg_cluster.create_database()
    opened = _together(lambda: PostgresCatalogue(url), lambda: PostgresCatalogue(url))
    try:
        assert all(isinstance(c, PostgresCatalogue) for c in opened), opened
        applied = opened[0].query("SELECT name FROM _migrations ORDER BY name")
        assert [r["name"] for r in applied] == sorted(name for name, _ in MIGRATIONS)
    finally:
        for c in opened:
            if isinstance(c, PostgresCatalogue):
                c.close()


def test_the_audit_log_refuses_changes_on_postgresql_too(archive):
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "test", "x", {})
    for sql in ("UPDATE audit_entries SET event = 'other'", "DELETE FROM audit_nodes",
                "DELETE FROM audit_checkpoints"):
        with pytest.raises(Exception, match="append-only"):
            with archive.catalogue.transaction() as db:
                db.execute(sql)
    assert audit.verify_log(archive).ok


def test_two_processes_appending_at_once_write_one_log_in_one_order(archive, second):
    def appender(arch, name):
        def run():
            made = []
            for i in range(12):
                with arch.catalogue.transaction() as db:
                    made.append(audit.record(db, arch, "test", f"{name}-{i}", {"n": i}))
            return made
        return run

    before = audit_log.size(archive.catalogue)
    results = _together(appender(archive, "a"), appender(second, "b"), appender(archive, "c"), appender(second, "d"))
    assert not [r for r in results if isinstance(r, Exception)], results
    indexes = sorted(index for made in results for index, _ in made)
    assert indexes == list(range(before, before + 48))   # every entry its own place, none lost, none twice
    witnesses = [(f"checkpoint after #{index}", cp) for made in results for index, cp in made]
    for arch in (archive, second):
        report = audit.verify_log(arch, witnesses)   # every checkpoint handed out proves against the one log
        assert report.ok, report.problems
        assert report.entries == before + 48


def test_a_bundle_committed_through_two_processes_at_once_is_catalogued_once(tmp_path, archive, second):
    station = make_station(tmp_path / "st", None, dpi=150)
    try:
        stations.add(archive, station.station_id, station.public_key.hex(), "unit-a")
        scan(station, {"archive_no": "D-0001", "name": "王五"}, {"item": "1-1", "title": "干部履历表"},
             "synthetic:seed=1,sheets=2")
        [bundle] = outbox.pending(station.store)
        data, signature = bundle["manifest"], bundle["signature"]
        offers = _together(lambda: ingest.offer(archive, station.station_id, data, signature),
                           lambda: ingest.offer(second, station.station_id, data, signature))
        assert offers[0].bundle_id == offers[1].bundle_id == bundle["id"]
        for page in manifest_format.blobs(manifest_format.read(data)):
            archive.blobs.put(station.store.page_path(page["sha256"], page["media_type"]).read_bytes())
        receipts = _together(lambda: ingest.commit(archive, station.station_id, bundle["id"]),
                             lambda: ingest.commit(second, station.station_id, bundle["id"]))
    finally:
        station.close()
    assert receipts[0] == receipts[1]   # the second commit is answered as the first was
    counts = second.catalogue.one(
        "SELECT (SELECT COUNT(*) FROM bundles) AS bundles, (SELECT COUNT(*) FROM materials) AS materials,"
        " (SELECT COUNT(*) FROM pages) AS pages, (SELECT COUNT(*) FROM audit_entries WHERE event = 'ingest') AS ingests")
    assert counts == {"bundles": 1, "materials": 1, "pages": 4, "ingests": 1}
    assert blob_index.count(archive.catalogue) == len({p["sha256"] for p in manifest_format.blobs(
        manifest_format.read(data))})
    assert audit.verify_log(archive).ok


def test_a_url_with_a_password_is_refused_and_the_password_never_shown(tmp_path, pg_cluster):
    home = tmp_path / "central"
    home.mkdir()
    (home / "central.toml").write_text('catalogue = "postgresql://quire:hunter2@db.example/quire"\n')
    with pytest.raises(ConfigError) as refused:
        config.load(home)
    assert "password file" in str(refused.value) and "PGPASSFILE" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ConfigError, match="pgpass") as refused:
        open_catalogue(pg_cluster.url().replace("quire@", "quire:hunter2@"))
    assert "hunter2" not in str(refused.value)


def test_the_sqlite_copy_is_refused_naming_the_database_s_own_tools(archive):
    with pytest.raises(ConfigError, match="pg_dump"):
        archive.catalogue.copy_to(None)
    with pytest.raises(ConfigError, match="pg_restore"):
        archive.catalogue.replace_from(None)


def test_a_restarted_database_server_is_reported_then_used_again():
    cluster = PgCluster().start()
    try:
        catalogue = PostgresCatalogue(cluster.create_database(), timeout_s=3)
        try:
            with catalogue.transaction() as db:
                blob_index.record(db, "a" * 64, 1, None, "2026-01-01T00:00:00.000Z")
            cluster.stop()
            with pytest.raises(StoreUnavailable, match="did not answer.*check that the database server is running") as failed:
                blob_index.count(catalogue)
            # what a station is told names neither the database's address nor the driver's words
            assert catalogue.where in str(failed.value) and catalogue.where not in failed.value.told
            assert "did not answer" in failed.value.told and "connection" not in failed.value.told
            cluster.start()
            assert blob_index.count(catalogue) == 1   # the pool made new connections
            with catalogue.transaction() as db:
                blob_index.record(db, "b" * 64, 1, None, "2026-01-01T00:00:00.000Z")
            assert [r["sha256"][0] for r in blob_index.since(catalogue, 0)] == ["a", "b"]
        finally:
            catalogue.close()
    finally:
        cluster.remove()


def _backend(pg_cluster, pid: int) -> dict | None:
    """What the server shows of one session (its last statement), seen from a connection of its own."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(pg_cluster.conninfo, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute("SELECT pid, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()


def test_a_connection_the_server_ended_is_replaced_before_a_query_uses_it(pg_cluster, pg_catalogue_template):
    catalogue = PostgresCatalogue(pg_cluster.create_database(pg_catalogue_template), pool_size=1)
    try:
        ended = catalogue.one("SELECT pg_backend_pid() AS pid")["pid"]
        import psycopg

        with psycopg.connect(pg_cluster.conninfo, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (ended,)).fetchone()[0]
        while _backend(pg_cluster, ended) is not None:   # the server takes a moment to end it
            threading.Event().wait(0.01)
        # the pool's one connection is the ended one: it is found dead and replaced, the caller sees no error
        assert catalogue.one("SELECT pg_backend_pid() AS pid")["pid"] != ended
        assert blob_index.count(catalogue) == 0
    finally:
        catalogue.close()


def test_an_idle_healthy_connection_is_handed_out_without_a_round_trip(pg_cluster, pg_catalogue_template):
    catalogue = PostgresCatalogue(pg_cluster.create_database(pg_catalogue_template), pool_size=1)
    try:
        pid = catalogue.one("SELECT pg_backend_pid() AS pid /* last said */")["pid"]
        with catalogue.pool.connection() as conn:   # what every query and transaction takes first
            assert conn.info.backend_pid == pid
        # the server was asked nothing to hand it out (psycopg_pool's own check sent an empty query each time)
        assert _backend(pg_cluster, pid)["query"] == "SELECT pg_backend_pid() AS pid /* last said */"
    finally:
        catalogue.close()


def test_connections_past_descriptor_1023_are_handed_out_too(pg_cluster, pg_catalogue_template):
    """An archive process serving many stations holds many sockets: the pool's look at a connection works
    whatever its descriptor's number (select() refuses those past 1023)."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(max(0, 1100 - len(os.listdir("/proc/self/fd"))))]
    try:
        catalogue = PostgresCatalogue(pg_cluster.create_database(pg_catalogue_template), pool_size=1, timeout_s=3)
        try:
            with catalogue.pool.connection() as conn:
                assert conn.fileno() > 1023
            assert catalogue.one("SELECT 7 AS n")["n"] == 7
        finally:
            catalogue.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
