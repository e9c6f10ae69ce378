"""Catalogue scale: search, listing and a commit on a PostgreSQL catalogue of --small page rows vs --rows.

For each size a fresh database in a private PostgreSQL cluster (Debian's server, initdb into a temporary
folder, Unix socket only) gets the archive's own schema (its migrations, run by opening the archive),
then dossiers, materials, bundles, blobs and page rows generated inside the database in proportion:
--pages-per-material pages a material, --materials-per-dossier materials a dossier, --dossiers-per-unit
dossiers a unit, so that every query below returns as many rows at both sizes. Timed, through the
archive's own functions (the SQL the archive runs), medians of --repeats on dossiers spread over the
whole catalogue, the two sizes taking turns operation by operation (a busy moment slows both alike):

    search by number    dossiers whose archive number starts with six characters (ten dossiers)
    search by name      dossiers whose name contains six characters of one name
    search by unit      the dossiers of one unit, with their materials counted
    unit overview       a unit's dossiers with materials, pages and bytes (the archivist's list)
    materials           a dossier's materials with bundle and station
    pages               a material's pages
    commit              one bundle's catalogue rows: the offer, then the commit transaction (checks, dossier,
                        material, its page and blob rows, the bundle marked committed; no audit entry)

It prints both sizes' times side by side with their ratio (goal: within 2×) and the EXPLAIN (ANALYZE,
BUFFERS) of every statement run at the large size (PostgreSQL's auto_explain), flagging each sequential
scan of a big table. The data lives in a temporary folder removed at the end; if --rows would not fit
on its disk, the largest size that does is used and said. Usage:

    nice -n 10 .venv/bin/python -m bench.catalogue_scale --rows 10000000
    nice -n 10 .venv/bin/python -m bench.catalogue_scale --rows 10000 --small 1000 --repeats 3
"""

import argparse
import json
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Bytes on disk one page row costs with its share of blobs, materials, bundles, dossiers and their
# indexes (measured here at 10 000 000 rows: about 0.75 kB), with room for WAL and sorting.
BYTES_PER_ROW = 1600
BIG_TABLES = ("pages", "blobs", "materials", "bundles", "dossiers")
OPERATIONS = ("search by number", "search by name", "search by unit", "unit overview", "materials", "pages",
              "commit")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="page rows of the large catalogue")
    parser.add_argument("--small", type=int, default=100_000, help="page rows of the small catalogue")
    parser.add_argument("--pages-per-material", type=int, default=10)
    parser.add_argument("--materials-per-dossier", type=int, default=10)
    parser.add_argument("--dossiers-per-unit", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats of each operation (median)")
    parser.add_argument("--quiet-plans", action="store_true", help="print only the plans' summary lines")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    per_dossier = args.pages_per_material * args.materials_per_dossier
    if args.small < per_dossier * args.dossiers_per_unit:
        parser.error(f"--small must hold one whole unit: at least {per_dossier * args.dossiers_per_unit} rows")
    root = Path(tempfile.mkdtemp(prefix="quire-bench-catscale-"))
    try:
        free = shutil.disk_usage(root).free
        fits = int(free * 0.8 // BYTES_PER_ROW)
        rows = args.rows
        if rows > fits:
            rows = max(fits // (per_dossier * args.dossiers_per_unit), 1) * per_dossier * args.dossiers_per_unit
            print(f"{args.rows:,} page rows need about {args.rows * BYTES_PER_ROW / 1e9:.0f} GB; {root} has "
                  f"{free / 1e9:.0f} GB free: using {rows:,} rows, the most that fit", flush=True)
        return _bench(root, args, [args.small, rows])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _bench(root: Path, args, sizes: list[int]) -> int:
    from tests.pgcluster import PgCluster

    class Cluster(PgCluster):
        """The tests' private cluster with a database server's memory and checkpoint spacing, not initdb's
        minimum (128 MB of buffers would measure the disk at 10 000 000 rows, not the plans)."""

        def command(self) -> list[str]:
            return [*super().command(), "-c", "shared_buffers=1GB", "-c", "max_wal_size=8GB",
                    "-c", "maintenance_work_mem=512MB", "-c", "effective_cache_size=8GB"]

    # Ended by TERM or HUP as by Ctrl-C: through the finally blocks that stop the server and remove its files.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    cluster = Cluster()   # its own temporary folder, which the server's user may enter
    cluster.start()
    plans = unavoidable = ""
    archives, shapes, urls = {}, {}, {}
    try:
        print(f"PostgreSQL {cluster.bin.parent.name} in {cluster.root}; {args.pages_per_material} pages a material, "
              f"{args.materials_per_dossier} materials a dossier, {args.dossiers_per_unit} dossiers a unit; "
              f"medians of {args.repeats}", flush=True)
        for size in sizes:
            shapes[size] = shape = _Shape(size, args)
            urls[size] = url = _database(cluster, f"catscale_{size}")
            archives[size] = _open(root / f"home-{size}", url)
            started = time.perf_counter()
            _generate(url, shape)
            print(f"{size:,} page rows ({shape.dossiers:,} dossiers, {shape.materials:,} materials, "
                  f"{shape.units:,} units) generated in {time.perf_counter() - started:.0f} s; "
                  f"{_size_of(cluster, url) / 1e9:.2f} GB", flush=True)
        # Both sizes timed together, each operation on one right after the other: a machine busier at one
        # moment than another slows both alike, not one size's every figure.
        times = _measure(archives, shapes, args.repeats)
        for archive in archives.values():
            archive.close()
        archives.clear()
        large = sizes[-1]
        plans = _explained(cluster, root / f"explain-{large}", urls[large], shapes[large], {})
        # With sequential scans forbidden the planner still reads a table whole where no index serves.
        unavoidable = _explained(cluster, root / f"check-{large}", urls[large], shapes[large],
                                 {"enable_seqscan": "off"})
        for url in urls.values():
            _drop(cluster, url)
    finally:
        for archive in archives.values():
            archive.close()
        cluster.remove()
    _report(times, sizes, plans, unavoidable, args.quiet_plans)
    return 0


class _Shape:
    """How many of each row a catalogue of ``pages`` page rows has, and how they are named."""

    def __init__(self, pages: int, args):
        self.pages_per_material, self.materials_per_dossier = args.pages_per_material, args.materials_per_dossier
        self.dossiers_per_unit = args.dossiers_per_unit
        self.materials = pages // self.pages_per_material
        self.dossiers = self.materials // self.materials_per_dossier
        self.pages = self.materials * self.pages_per_material
        self.units = -(-self.dossiers // self.dossiers_per_unit)

    @staticmethod
    def archive_no(k: int) -> str:
        return f"D{k:08d}"

    def unit(self, k: int) -> str:
        return f"U{(k - 1) // self.dossiers_per_unit + 1:06d}"


# -- the database --------------------------------------------------------------------------------

def _database(cluster, name: str) -> str:
    import psycopg

    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql:///{name}?host={cluster.socket_dir}&user=quire"


def _drop(cluster, url: str) -> None:
    import psycopg

    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{_dbname(url)}"')


def _dbname(url: str) -> str:
    return url.split("///", 1)[1].split("?", 1)[0]


def _size_of(cluster, url: str) -> int:
    import psycopg

    with psycopg.connect(cluster.conninfo) as conn:
        return conn.execute("SELECT pg_database_size(%s)", (_dbname(url),)).fetchone()[0]


def _open(home: Path, url: str):
    """The archive on this database: opening it runs the migrations (the archive's own schema)."""
    from central import config
    from central.archive import open_archive

    home.mkdir(parents=True)
    (home / "central.toml").write_text(f'catalogue = "{url}"\n')
    return open_archive(config.load(home))


def _generate(url: str, shape: _Shape) -> None:
    """Fill the catalogue inside the database (generate_series: no row crosses the socket). Foreign keys
    are not checked row by row while loading (session_replication_role = replica); every row is consistent
    by construction, as the archive would have written it."""
    import psycopg

    record = json.dumps({"skew_deg": 0.12, "rotation_deg": 0.0, "orientation": 0, "crop": None, "blank": False,
                         "blank_score": 5.0, "colour": "grey", "colour_reason": "no colour found", "codec": "jpeg",
                         "dpi": 300, "dpi_source": "scanner", "bytes": 480000, "seconds": 0.41})
    ppm, mpd, dpu = shape.pages_per_material, shape.materials_per_dossier, shape.dossiers_per_unit
    statements = [
        "SET session_replication_role = replica",
        "SET work_mem = '256MB'",
        f"""INSERT INTO units (id, name, dossiers_expected, created_at)
            SELECT 'U' || lpad(u::text, 6, '0'), 'Unit ' || u, {dpu}, '2026-01-01T00:00:00.000Z'
            FROM generate_series(1, {shape.units}) u""",
        f"""INSERT INTO stations (id, public_key, unit, added_at)
            SELECT 'st-' || u, sha256(('station' || u)::bytea), 'U' || lpad(u::text, 6, '0'), '2026-01-01T00:00:00.000Z'
            FROM generate_series(1, {shape.units}) u""",
        f"""INSERT INTO dossiers (archive_no, name, unit, created_at, sex, birth_date, post, kind)
            SELECT 'D' || lpad(k::text, 8, '0'), 'n' || substr(md5(k::text), 1, 12),
                   'U' || lpad(((k - 1) / {dpu} + 1)::text, 6, '0'), '2026-01-02T00:00:00.000Z',
                   CASE WHEN mod(k, 2) = 0 THEN '女' ELSE '男' END, '1970-01-01', 'clerk', 'personnel'
            FROM generate_series(1, {shape.dossiers}) k""",
        f"""INSERT INTO bundles (id, station_id, manifest, signature, state, offered_at, committed_at, receipt,
                                 receipt_signature, seq, operator, archive_no, pages)
            SELECT encode(sha256(('bundle' || j)::bytea), 'hex'),
                   'st-' || ((j - 1) / {mpd * dpu} + 1),
                   convert_to(repeat('{{"manifest": "stand-in"}}', 12), 'UTF8'), sha256(('sig' || j)::bytea),
                   'committed', '2026-01-03T00:00:00.000Z', '2026-01-03T00:00:01.000Z',
                   convert_to(repeat('{{"receipt": "stand-in"}}', 8), 'UTF8'), sha256(('rsig' || j)::bytea),
                   j, 'op', 'D' || lpad(((j - 1) / {mpd} + 1)::text, 8, '0'), {ppm}
            FROM generate_series(1, {shape.materials}) j ORDER BY 1""",
        f"""INSERT INTO materials (id, archive_no, item, category, title, date_formed, page_count, remarks,
                                   bundle_id, catalogued_at, version, station_id)
            SELECT j, 'D' || lpad(((j - 1) / {mpd} + 1)::text, 8, '0'), '1-' || (mod(j - 1, {mpd}) + 1), '1',
                   'Material ' || j, '2001-05-01', {ppm}, NULL, encode(sha256(('bundle' || j)::bytea), 'hex'),
                   '2026-01-03T00:00:01.000Z', 1, 'st-' || ((j - 1) / {mpd * dpu} + 1)
            FROM generate_series(1, {shape.materials}) j""",
        # In key order: the primary key's index grows at its end instead of at random places.
        f"""INSERT INTO blobs (sha256, bytes, stored_at, sm3, seq)
            SELECT encode(sha256(('page' || i)::bytea), 'hex'), 480000, '2026-01-03T00:00:00.500Z', NULL, i
            FROM generate_series(1, {shape.pages}) i ORDER BY 1""",
        f"""INSERT INTO pages (material_id, n, sha256, bytes, media_type, width_px, height_px, dpi, colour, record_json)
            SELECT (i - 1) / {ppm} + 1, mod(i - 1, {ppm}) + 1, encode(sha256(('page' || i)::bytea), 'hex'), 480000,
                   'image/jpeg', 2480, 3508, 300, 'grey', %s
            FROM generate_series(1, {shape.pages}) i""",
    ]
    # The identity columns continue after the generated ids, as if the archive had numbered them.
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql, (record,) if "%s" in sql else None)
        conn.execute("SELECT setval(pg_get_serial_sequence('materials', 'id'), %s)", (shape.materials,))
        conn.execute("VACUUM ANALYZE")


# -- what is timed -------------------------------------------------------------------------------

def _operations(archive, shape: _Shape, rng: random.Random):
    """One of each operation on a dossier picked at random; yields (name, callable)."""
    from central import dossiers, listing
    from central.store import dossiers as store_dossiers

    k = rng.randint(1, shape.dossiers)
    archive_no = shape.archive_no(k)
    # Ten dossiers: a number without its last digit, from a block of ten that is all there (k0 … k9).
    tens = max(1, min(k // 10, shape.dossiers // 10 - 1))
    prefix = shape.archive_no(tens * 10)[:-1]
    name = _name_of(archive, archive_no)
    start = rng.randint(0, len(name) - 6)
    unit = shape.unit(k)
    item = f"1-{rng.randint(1, shape.materials_per_dossier)}"
    yield "search by number", lambda: _expect(dossiers.search(archive, archive_no=prefix, units=None), 10)
    part = name[start:start + 6]
    yield "search by name", lambda: _expect(dossiers.search(archive, name=part, units=None), 1, more=True)
    yield "search by unit", lambda: _expect(dossiers.search(archive, unit=unit, units=None), 1, more=True)
    yield "unit overview", lambda: _expect(store_dossiers.overview(archive.catalogue, [unit]), 1, more=True)
    yield "materials", lambda: _expect(listing.materials(archive, archive_no), shape.materials_per_dossier, more=True)
    yield "pages", lambda: _expect(listing.pages(archive, archive_no, item), shape.pages_per_material)
    yield "commit", lambda: _commit(archive, shape, archive_no, rng)


def _name_of(archive, archive_no: str) -> str:
    from central.store import dossiers as store_dossiers

    return store_dossiers.get(archive.catalogue, archive_no)["name"]


def _expect(found: list, n: int, more: bool = False) -> None:
    if len(found) < n or not more and len(found) != n:
        raise SystemExit(f"the catalogue answered {len(found)} rows where {n}{' or more' if more else ''} were "
                         "expected: the generated catalogue does not match this bench")


_commits = iter(range(1, 1 << 30))


def _commit(archive, shape: _Shape, archive_no: str, rng: random.Random) -> None:
    """One bundle's catalogue rows as ingest writes them: the offer, then the commit transaction."""
    import hashlib

    from central.store import blob_index, bundles, materials
    from central.store import dossiers as store_dossiers
    from central.store import stations as store_stations
    from quire.db import utcnow

    n = next(_commits)
    item = f"9-{n}"
    pages = [{"n": p, "sha256": hashlib.sha256(f"new {n} {p} {rng.random()}".encode()).hexdigest(), "bytes": 480000,
              "media_type": "image/jpeg", "width_px": 2480, "height_px": 3508, "dpi": 300, "colour": "grey",
              "record": {"skew_deg": 0.1, "dpi": 300}} for p in range(1, shape.pages_per_material + 1)]
    station = "st-" + str((int(archive_no[1:]) - 1) // shape.dossiers_per_unit + 1)
    manifest = json.dumps({"station_id": station, "batch": {"operator": "op"}, "dossier": {"archive_no": archive_no},
                           "material": {"item": item, "title": "new"}, "pages": pages}).encode()
    bundle_id = hashlib.sha256(manifest).hexdigest()
    with archive.catalogue.transaction() as db:
        if bundles.get(db, bundle_id) is None:
            bundles.add_offered(db, bundle_id, station, manifest, b"s" * 64, utcnow())
    with archive.catalogue.transaction() as db:
        assert bundles.get(db, bundle_id)["state"] == "offered"
        for p in pages:
            if not blob_index.has(db, p["sha256"]):
                blob_index.record(db, p["sha256"], p["bytes"], None, utcnow())
        owner = store_dossiers.get(db, archive_no)
        assert owner and store_stations.unit_of(db, station) == owner["unit"]
        assert materials.get(db, archive_no, item) is None
        now = utcnow()
        store_dossiers.add(db, archive_no, owner["unit"], {}, now)
        material_id = materials.add(db, archive_no, item, "9", {"title": "new", "date_formed": None,
                                                                 "page_count": len(pages), "remarks": None,
                                                                 "bundle_id": bundle_id, "catalogued_at": now})
        materials.add_pages(db, material_id, pages)
        bundles.mark_committed(db, bundle_id, now, b"receipt", b"r" * 64)


def _measure(archives: dict, shapes: dict, repeats: int) -> dict[int, dict[str, float]]:
    """Median seconds of each operation at each size over ``repeats`` random dossiers (after one untimed
    round), the sizes taking turns operation by operation, first one then the other."""
    rngs = {size: random.Random(16) for size in archives}
    taken = {size: {name: [] for name in OPERATIONS} for size in archives}
    for round_ in range(repeats + 1):
        rounds = {size: list(_operations(archives[size], shapes[size], rngs[size])) for size in archives}
        # Which size goes first alternates by round: the one run second tends to find the machine warmed.
        order = list(archives) if round_ % 2 else list(archives)[::-1]
        for at, name in enumerate(OPERATIONS):
            for size in order:
                op, run = rounds[size][at]
                assert op == name
                started = time.perf_counter()
                run()
                if round_:
                    taken[size][name].append(time.perf_counter() - started)
    return {size: {name: statistics.median(values) for name, values in ops.items()} for size, ops in taken.items()}


def _explained(cluster, home: Path, url: str, shape: _Shape, settings: dict[str, str]) -> str:
    """Every statement of one round, with its EXPLAIN (ANALYZE, BUFFERS) from auto_explain, as logged,
    on connections with ``settings``."""
    import psycopg

    settings = {"session_preload_libraries": "auto_explain", "auto_explain.log_min_duration": "0",
                "auto_explain.log_analyze": "on", "auto_explain.log_buffers": "on", "auto_explain.log_timing": "on",
                **settings}
    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        name = _dbname(url)
        conn.execute(f'ALTER DATABASE "{name}" RESET ALL')
        for setting, value in settings.items():
            conn.execute(f'ALTER DATABASE "{name}" SET {setting} = \'{value}\'')
    archive = _open(home, url)   # fresh connections, with these settings
    try:
        out = []
        for op, run in _operations(archive, shape, random.Random(61)):
            before = cluster.log.stat().st_size
            run()
            _settled(cluster.log)   # the server writes its log lines a moment after answering
            out.append((op, _read(cluster.log, before)))
    finally:
        archive.close()
    return "\n".join(f"== {op}\n{text}" for op, text in out)


def _settled(log: Path, quiet_s: float = 0.5, limit_s: float = 10.0) -> None:
    """Wait until the server's log has not grown for ``quiet_s`` (at most ``limit_s``)."""
    size, since, deadline = log.stat().st_size, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        now = log.stat().st_size
        if now != size:
            size, since = now, time.monotonic()


def _read(log: Path, offset: int) -> str:
    with open(log, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    kept = []
    for line in text.splitlines():
        line = re.sub(r"^\S+ \S+ \S+ \[\d+\] ", "", line)   # log_line_prefix, where one is set
        if "auto_explain" in line or line.startswith(("LOG:  duration", "\t")) or line.startswith("  "):
            kept.append(line.replace("LOG:  ", ""))
    return "\n".join(kept)


# -- the report -----------------------------------------------------------------------------------

_SCAN = re.compile(r"(?:->\s+)?(Seq Scan|Index Scan|Index Only Scan)(?: Backward)?(?: using \w+)? on (\w+)")


def _full_scans(plans: str) -> list[str]:
    """Each operation and big table a plan reads whole — a sequential scan, or an index scan without an
    index condition (the whole index in order, a filter on every row) — as "operation: table"."""
    found, op = [], ""
    lines = plans.splitlines()
    for at, line in enumerate(lines):
        if line.startswith("== "):
            op = line[3:]
        m = _SCAN.search(line)
        if not m or m.group(2) not in BIG_TABLES:
            continue
        depth = len(line) - len(line.lstrip())
        details = []
        for after in lines[at + 1:]:
            if len(after) - len(after.lstrip()) <= depth or after.lstrip().startswith("->"):
                break
            details.append(after.strip())
        whole = m.group(1) == "Seq Scan" or not any(d.startswith("Index Cond") for d in details)
        if whole and f"{op}: {m.group(2)}" not in found:
            found.append(f"{op}: {m.group(2)}")
    return found


def _report(times: dict[int, dict[str, float]], sizes: list[int], plans: str, unavoidable: str, quiet: bool) -> None:
    small, large = sizes
    print(f"\n{'operation':<18} {f'{small:,} rows':>14} {f'{large:,} rows':>16} {'ratio':>7}")
    worst = 0.0
    for op in OPERATIONS:
        a, b = times[small][op], times[large][op]
        worst = max(worst, b / a)
        print(f"{op:<18} {a * 1000:>11.2f} ms {b * 1000:>13.2f} ms {b / a:>6.2f}×")
    scans, no_index = _full_scans(plans), _full_scans(unavoidable)
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) at {large:,} rows, every statement the operations ran:")
    if quiet:
        print("\n".join(line for line in plans.splitlines() if line.startswith(("==", "duration", "Query Text"))))
    else:
        print(plans)
    print(f"\nfull scans of a big table at {large:,} rows: {'; '.join(scans) or 'none'}")
    print(f"full scans no index can avoid (sequential scans forbidden): {'; '.join(no_index) or 'none'}")
    print(f"goal: every operation within 2× of its time at {small:,} rows (worst {worst:.2f}×: "
          f"{'met' if worst <= 2 else 'NOT met'}); no full scans ({'NOT met' if scans or no_index else 'met'})",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
