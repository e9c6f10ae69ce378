"""Scale-out: many stations syncing at once into the archive on each kind of storage, in one run.

--stations simulated stations (each its own Ed25519 key, registered as `quire-central stations add` does
and enrolled as an operator would, each holding --bundles sealed bundles of --pages pages) sync at the
same moment through the station's own sync (station.sync, pinned TLS gRPC) into real
`quire-central serve` processes on loopback:

    sqlite+disk   the embedded default: one process, the home's SQLite file and blobs folder
    pg+s3 x1      one process on a PostgreSQL catalogue (private Debian cluster) and a SeaweedFS bucket
    pg+s3 x3      three processes on that database and bucket; every station is given all three addresses

and on request (--setups) sqlite+s3 and pg+disk, which tell the catalogue's cost from the page store's.

The stations' bundles are made and signed once (kept under --cache) and copied for every run, so each
archive receives the same bytes. Printed per setup, medians of --runs: bundles committed per second,
MB/s of page bytes, p95 bundle latency (from offering a bundle to holding its verified receipt),
errors (bundles not committed after up to five sync runs, refused, or a station stopped), bundles
deferred (left queued by a sync run while the archive was busy, committed by a later run), retries (of
which waits: uploads sent again on the same connection after the archive named a wait for a free slot),
CPU of the archive's side per GB (split per run into serve, database and object store),
and throughput as a ratio to sqlite+disk. Goal: pg+s3 x1 ≥ 50 % of sqlite+disk, 0 errors. Usage:

    nice -n 10 .venv/bin/python -m bench.scaleout --stations 50 --bundles 4 --runs 3
    nice -n 10 .venv/bin/python -m bench.scaleout --stations 2 --bundles 2 --pages 2 --runs 1
"""

import argparse
import io
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CENTRAL = Path(sys.executable).parent / "quire-central"
SETUPS = ("sqlite+disk", "pg+s3 x1", "pg+s3 x3")
EXTRA = ("sqlite+s3", "pg+disk")   # on request only, to tell the catalogue's share from the page store's
UNIT = "bench"
SYNC_RUNS = 5   # sync runs a station makes at most to deliver all its bundles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=50, help="stations syncing at once")
    parser.add_argument("--bundles", type=int, default=4, help="sealed bundles each station holds")
    parser.add_argument("--pages", type=int, default=5, help="pages per bundle")
    parser.add_argument("--page-kb", type=int, default=500,
                        help="bytes of each page file, in kB (at least its JPEG data: about 180 kB)")
    parser.add_argument("--runs", type=int, default=3, help="runs of every setup (medians reported)")
    parser.add_argument("--clients", type=int, default=5,
                        help="processes the stations are spread over (threads inside each)")
    parser.add_argument("--workers", type=int, default=None,
                        help="central.toml's workers (gRPC threads, of which all but two take uploads) for every "
                             "setup alike; default: the archive's own default")
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help=f"comma-separated, of: {', '.join(SETUPS)} (the first is the one ratios are to)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "quire-bench" / "scaleout", help="where the stations' sealed bundles are kept between runs")
    args = parser.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in setups if s not in SETUPS + EXTRA]
    if unknown:
        parser.error(f"unknown setup {unknown[0]!r}; choose from {', '.join(SETUPS + EXTRA)}")
    sys.path.insert(0, str(ROOT))
    from quire.memory import tune_allocator

    tune_allocator()
    # Ended by TERM or HUP as by Ctrl-C: through the finally blocks that stop the servers and remove the files.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    templates = _templates(args)
    total = sum(f.stat().st_size for t in templates for f in (t / "pages").rglob("*") if f.is_file())
    each = total / (args.stations * args.bundles * args.pages)
    print(f"{args.stations} stations × {args.bundles} bundles × {args.pages} pages of {each / 1e3:.0f} kB "
          f"({total / 1e6:.0f} MB), {args.clients} client processes, loopback, pinned TLS, {os.cpu_count()} cores",
          flush=True)
    results: dict[str, list[dict]] = {s: [] for s in setups}
    with tempfile.TemporaryDirectory(prefix="quire-bench-scaleout-") as tmp:
        root = Path(tmp)
        os.environ["SANE_CONFIG_DIR"] = str(root)   # no scanner needed
        backing = _Backing(root / "servers")
        try:
            for run in range(args.runs):
                for setup in setups:
                    where = root / f"run{run}-{setup.replace(' ', '').replace('+', '-')}"
                    res = _run(setup, templates, where, backing, args)
                    results[setup].append(res)
                    print(f"run {run + 1} {setup:<12} {res['commits'] / res['seconds']:7.2f} commits/s "
                          f"{res['bytes'] / res['seconds'] / 1e6:7.1f} MB/s  p95 {res['p95_s'] * 1000:7.0f} ms  "
                          f"errors {res['errors']}  deferred {res['deferred']}  retries {res['retries']} "
                          f"(waits {res['waits']})", flush=True)
                    print("    archive CPU s/GB: " + ", ".join(f"{part} {cpu / max(res['bytes'], 1) * 1e9:.1f}"
                                                            for part, cpu in res["cpu_parts"].items()), flush=True)
                    for line in res["problems"][:5]:
                        print(f"    {line}", flush=True)
        finally:
            backing.close()
    _report(results, setups, args.runs)
    return 0


# -- stations: made once, copied for every run ---------------------------------------------------

def _templates(args) -> list[Path]:
    """One sealed station home per station (cached under --cache for these sizes)."""
    where = args.cache / f"{args.bundles}b-{args.pages}p-{args.page_kb}kb"
    where.mkdir(parents=True, exist_ok=True)
    homes = [where / f"st-{n:03d}" for n in range(args.stations)]
    todo = [h for h in homes if not (h / "sealed").exists()]
    if todo:
        print(f"sealing the bundles of {len(todo)} stations into {where} (once)", flush=True)
        # Sealing is the station's own code (store.add_page, outbox.seal_batch): a pool of processes.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(len(todo), os.cpu_count() or 1)) as pool:
            pool.starmap(_seal_station, [(str(h), args.bundles, args.pages, args.page_kb) for h in todo])
    return homes


def _seal_station(home: str, bundles: int, pages: int, page_kb: int) -> None:
    """A station at ``home`` (id from its folder name) holding ``bundles`` sealed bundles of ``pages`` pages,
    each page a distinct JPEG file of about ``page_kb`` kB; a file ``sealed`` marks it finished."""
    import numpy as np
    from PIL import Image

    from bench.sync import _page
    from station import config, home as station_home, outbox

    path = Path(home)
    shutil.rmtree(path, ignore_errors=True)
    st = station_home.init(config.load(path), path.name)
    seed = int(path.name.rsplit("-", 1)[1])
    rng = np.random.default_rng(seed)
    # A pale colour page (as _page's record says) of small JPEG data; random bytes after it make each file
    # its size and its own digest. The archive reads a page's header, not its pixels.
    base = np.full((3508 // 16, 2480 // 16, 3), (236, 230, 220), dtype=np.uint8)
    base[rng.integers(0, base.shape[0], 200), rng.integers(0, base.shape[1], 200)] = (40, 40, 120)
    buf = io.BytesIO()
    Image.fromarray(base).resize((2480, 3508)).save(buf, "JPEG", quality=75, dpi=(300, 300))
    head = buf.getvalue()
    try:
        for b in range(bundles):
            batch = st.store.open_batch({"archive_no": f"SC-{path.name}", "name": f"Station {seed}"},
                                        {"item": f"1-{b + 1}", "title": "scale-out"}, "bench", "bench")
            for n in range(1, pages + 1):
                st.store.add_page(batch.id, n, _page(head + rng.bytes(max(page_kb * 1000 - len(head), 1000))))
            outbox.seal_batch(st.store, batch.id, st.station_id, st.key)
    finally:
        st.close()
    (path / "sealed").write_text("")


def _copy_station(template: Path, to: Path) -> None:
    """A fresh copy of a sealed station: page files linked (never written again), the store copied."""
    def link_or_copy(src, dst):
        if Path(src).suffix in (".db", ".db-wal", ".db-shm") or Path(src).name == "sealed":
            return shutil.copy2(src, dst)
        return os.link(src, dst)

    shutil.copytree(template, to, copy_function=link_or_copy)


# -- the archive's backing servers (PostgreSQL, SeaweedFS), started once per bench run -----------

class _Backing:
    """A private PostgreSQL cluster and a SeaweedFS ``weed mini``, children of this process, each
    started when a setup first needs it."""

    def __init__(self, root: Path):
        self.root, self.pg, self.s3 = root, None, None

    def configure(self, setup: str, home: Path) -> None:
        """Write ``home``'s central.toml for ``setup``: a new database and a new prefix of the bucket."""
        lines = []
        if setup.startswith("pg"):
            import psycopg

            from tests.pgcluster import PgCluster

            if self.pg is None:
                self.pg = PgCluster(Path(tempfile.mkdtemp(prefix="quire-bench-pg-"))).start()
            name = "bench_" + uuid.uuid4().hex[:12]
            with psycopg.connect(self.pg.conninfo, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            lines.append(f'catalogue = "postgresql:///{name}?host={self.pg.socket_dir}&user=quire"')
        if "s3" in setup:
            from tests.s3server import SeaweedS3

            if self.s3 is None:
                self.s3 = SeaweedS3(self.root / "weed").start()
            self.s3.credentials_file(home / "s3.toml")
            lines += [f'blobs = "s3://{self.s3.bucket}/{uuid.uuid4().hex}"', 'blobs_credentials = "s3.toml"']
        (home / "central.toml").write_text("".join(line + "\n" for line in lines))

    def pids(self, setup: str) -> dict[str, list[int]]:
        """The backing servers' processes this setup uses, by part."""
        wanted = {"database": self.pg if setup.startswith("pg") else None,
                  "object store": self.s3 if "s3" in setup else None}
        return {part: [server.proc.pid] for part, server in wanted.items() if server is not None and server.proc}

    def close(self) -> None:
        if self.s3:
            self.s3.stop()
        if self.pg:
            self.pg.remove()


# -- one run of one setup -------------------------------------------------------------------------

def _run(setup: str, templates: list[Path], root: Path, backing: _Backing, args) -> dict:
    home = root / "central"
    home.mkdir(parents=True)
    backing.configure(setup, home)
    if args.workers:
        with (home / "central.toml").open("a") as toml:
            toml.write(f"workers = {args.workers}\n")
    _register(home, templates)
    servers = []
    try:
        for _ in range(3 if setup.endswith("x3") else 1):
            servers.append(_serve(home))
        addresses = ",".join(address for _, address in servers)
        homes = [root / "stations" / t.name for t in templates]
        for template, to in zip(templates, homes):
            _copy_station(template, to)
        parts = {"serve": [p.pid for p, _ in servers], **backing.pids(setup)}
        cpu0 = {part: _cpu(pids) for part, pids in parts.items()}
        res = _sync_all(homes, addresses, args.clients)
        res["cpu_parts"] = {part: _cpu(pids) - cpu0[part] for part, pids in parts.items()}
        res["cpu_s"] = sum(res["cpu_parts"].values())
        res["expected"] = len(templates) * args.bundles
        missing = res["expected"] - res["commits"]
        res["errors"] += max(missing - res["errors"], 0)
        return res
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _register(home: Path, templates: list[Path]) -> None:
    """Create the archive and register every station's public key with it, through the functions
    `quire-central init` and `quire-central stations add` call (in this process: 50 command starts
    would take minutes on a busy machine)."""
    from central import config as central_config, stations
    from central.archive import open_archive
    from station import config, home as station_home

    archive = open_archive(central_config.load(home))
    try:
        for template in templates:
            st = station_home.open_station(config.load(template))
            try:
                stations.add(archive, st.station_id, st.public_key.hex(), UNIT)
            finally:
                st.close()
    finally:
        archive.close()


def _serve(home: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([str(CENTRAL), "--home", str(home), "serve", "--listen", "127.0.0.1:0",
                               "--no-advertise"], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"quire-central serve did not start (said {line!r}); see its messages above")
    return server, line.removeprefix("listening on ")


def _sync_all(homes: list[Path], addresses: str, clients: int) -> dict:
    """Every station syncs at once, spread over ``clients`` processes; their figures, merged."""
    ctx = multiprocessing.get_context("spawn")
    groups = [homes[i::clients] for i in range(min(clients, len(homes)))]
    barrier, queue = ctx.Barrier(len(groups) + 1), ctx.Queue()
    workers = [ctx.Process(target=_client, args=([str(h) for h in g], addresses, barrier, queue)) for g in groups]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=600)   # every station enrolled and open: they start together
    except threading.BrokenBarrierError:
        for w in workers:
            w.join(timeout=60)
        said = [queue.get_nowait() for _ in range(queue.qsize())] if not queue.empty() else []
        raise SystemExit(f"the stations could not be made ready: {'; '.join(map(str, said)) or 'see above'}") from None
    outs = [queue.get(timeout=3600) for _ in workers]
    for w in workers:
        w.join()
    stations = [s for out in outs for s in out]
    start, end = min(s["start"] for s in stations), max(s["end"] for s in stations)
    latencies = [lat for s in stations for lat in s["latencies"]]
    return {"seconds": end - start, "commits": sum(s["committed"] for s in stations),
            "bytes": sum(s["bytes"] for s in stations),
            "p95_s": _percentile(latencies, 95), "errors": sum(s["errors"] for s in stations),
            "retries": sum(s["retries"] for s in stations), "waits": sum(s["waits"] for s in stations),
            "deferred": sum(s["deferred"] for s in stations),
            "problems": [p for s in stations for p in s["problems"]]}


def _client(homes: list[str], addresses: str, barrier, queue) -> None:
    """One client process: enrol its stations, wait for the others, then sync them all at once (threads)."""
    sys.path.insert(0, str(ROOT))
    from station import config, home as station_home, outbox
    from station.enrol import enroll
    from station.sync import sync

    stations = []
    try:
        for h in homes:
            st = station_home.open_station(config.load(h, central=addresses))
            stations.append(st)
            enroll(st, addresses)
    except Exception as exc:
        queue.put(f"{Path(h).name}: {type(exc).__name__}: {exc}")
        barrier.abort()
        raise
    barrier.wait(timeout=600)

    def one(st) -> dict:
        start = time.time()
        out = {"start": start, "problems": [], "errors": 0, "retries": 0, "waits": 0, "bytes": 0, "deferred": 0}
        try:
            # A bundle a run leaves queued (the archive refused it as busy for the whole retry span) goes
            # with the next run, as the daemon's next sync would send it, here without its interval.
            for attempt in range(SYNC_RUNS):
                report = sync(st)
                out["retries"] += report.retries
                out["waits"] += report.waits
                out["bytes"] += report.bytes_sent
                if report.rejected or report.stopped or not report.failed:
                    break
                if attempt < SYNC_RUNS - 1:
                    out["deferred"] += len(report.failed)
            out["errors"] = len(report.failed) + len(report.rejected) + bool(report.stopped)
            out["problems"] = [f"{st.station_id}: {why}" for why in (*report.failed.values(),
                                                                     *report.rejected.values(), report.stopped) if why]
        except Exception as exc:  # noqa: BLE001 - counted and shown: the figure is the point
            out["errors"] = 1
            out["problems"] = [f"{st.station_id}: {type(exc).__name__}: {exc}"]
        out["end"] = time.time()
        done = sorted(_epoch(b["committed_at"]) for b in outbox.bundles(st.store) if b["state"] == "committed")
        out["committed"] = len(done)
        # Bundles go one after another: each one's latency runs from the previous receipt (or the start).
        out["latencies"] = [t - prev for prev, t in zip([start, *done], done)]
        return out

    with ThreadPoolExecutor(len(stations)) as pool:
        results = list(pool.map(one, stations))
    for st in stations:
        st.close()
    queue.put(results)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _cpu(roots: list[int]) -> float:
    """CPU seconds these processes and all their descendants (PostgreSQL's backends) have used so far,
    with what their ended children used (from /proc)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))  # ppid; u+s, children's
    wanted, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in wanted:
            wanted.add(pid)
            todo += [child for child, (ppid, _) in stats.items() if ppid == pid]
    return sum(stats[pid][1] for pid in wanted) / os.sysconf("SC_CLK_TCK")


def _report(results: dict[str, list[dict]], setups: list[str], runs: int) -> None:
    rows = {}
    for setup in setups:
        rs = results[setup]
        rows[setup] = {
            "commits_s": statistics.median(r["commits"] / r["seconds"] for r in rs),
            "mb_s": statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in rs),
            "p95_ms": statistics.median(r["p95_s"] * 1000 for r in rs),
            "errors": sum(r["errors"] for r in rs), "deferred": sum(r["deferred"] for r in rs),
            "retries": sum(r["retries"] for r in rs), "waits": sum(r["waits"] for r in rs),
            "cpu_gb": statistics.median(r["cpu_s"] / max(r["bytes"], 1) * 1e9 for r in rs),
        }
    peer = rows[setups[0]]
    print(f"\n{'setup':<12} {'commits/s':>10} {'MB/s':>8} {'p95 ms':>8} {'errors':>7} {'deferred':>9} {'retries':>8} "
          f"{'waits':>6} {'archive CPU s/GB':>17} {f'vs {setups[0]}':>16}")
    for setup, r in rows.items():
        share = r["commits_s"] / peer["commits_s"] if peer["commits_s"] else float("nan")
        print(f"{setup:<12} {r['commits_s']:>10.2f} {r['mb_s']:>8.1f} {r['p95_ms']:>8.0f} {r['errors']:>7} "
              f"{r['deferred']:>9} {r['retries']:>8} {r['waits']:>6} {r['cpu_gb']:>17.1f} {share:>15.0%}")
    print("errors: bundles not committed after the stations' sync runs, refused, or a station stopped; deferred: "
          "bundles a sync run left queued after its retry span (the archive busy), committed by a later run\n"
          "archive CPU: the serve processes with the database and object store servers each setup uses\n"
          "commits/s, MB/s, p95 and CPU are medians over the runs; errors, deferred, retries and waits are totals")
    if "pg+s3 x1" in rows and setups[0] == "sqlite+disk":
        share = rows["pg+s3 x1"]["commits_s"] / peer["commits_s"] if peer["commits_s"] else float("nan")
        errors = sum(r["errors"] for r in rows.values())
        print(f"goal: pg+s3 x1 ≥ 50 % of sqlite+disk throughput ({share:.0%}: "
              f"{'met' if share >= 0.5 else 'NOT met'}), "
              f"0 errors ({errors}: {'met' if errors == 0 else 'NOT met'}); medians of {runs} runs", flush=True)
    else:
        print(f"medians of {runs} runs", flush=True)


if __name__ == "__main__":
    sys.exit(main())
