"""The private PostgreSQL cluster the tests start: reachable by psycopg over its Unix socket only, owned
by a non-root user, and keeping committed rows across a kill -9."""

import os
import stat

import psycopg

from tests.pgcluster import PgCluster


def test_the_session_cluster_takes_sql_over_its_private_socket_only(pg_cluster):
    with psycopg.connect(pg_cluster.conninfo) as db:
        assert db.execute("SHOW listen_addresses").fetchone() == ("",)   # no TCP listener at all
        assert db.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 150000
        db.execute("CREATE TEMP TABLE t (n int PRIMARY KEY, word text)")
        db.execute("INSERT INTO t VALUES (1, '档案'), (2, '材料')")
        assert db.execute("SELECT word FROM t ORDER BY n").fetchall() == [("档案",), ("材料",)]
    socket_dir = pg_cluster.socket_dir.stat()
    assert (pg_cluster.socket_dir / f".s.PGSQL.{pg_cluster.port}").exists()
    assert stat.S_IMODE(socket_dir.st_mode) == 0o700 and stat.S_IMODE(pg_cluster.data.stat().st_mode) == 0o700
    if os.geteuid() == 0:   # initdb refuses root: the cluster's files belong to the server's own user
        assert pg_cluster.data.stat().st_uid == socket_dir.st_uid != 0


def test_committed_rows_survive_a_kill_9_of_the_server():
    cluster = PgCluster().start()
    try:
        with psycopg.connect(cluster.conninfo) as db:
            db.execute("CREATE TABLE pages (sha256 text PRIMARY KEY)")
            db.execute("INSERT INTO pages VALUES ('a'), ('b')")
        cluster.kill()
        cluster.start()
        with psycopg.connect(cluster.conninfo) as db:
            assert db.execute("SELECT count(*) FROM pages").fetchone() == (2,)
    finally:
        cluster.remove()
    assert not cluster.root.exists()
