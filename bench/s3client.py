"""S3 clients: the archive's CPU per request with boto3 (as the S3 page store configured it) beside
obstore (as it is configured now), in one run against one SeaweedFS on loopback.

The requests a synced page costs: a create-only put of a page, a ranged GET of a page's head, a
listing of a prefix that holds nothing (a station's partial uploads), a HEAD. Printed per operation:
this process's CPU (every thread: obstore works on threads of its own) and wall time per request,
medians of --runs, and obstore's CPU as a share of boto3's.

With --store-puts N, the object store's own side too: SeaweedFS's CPU (its process, from /proc) per
create-only put of a page, for each request setting the archive could choose (the checksum header it
asks for, a Content-Type) against one server, and for each server setting an operations team could
choose against servers started with it, all running at once and taken in turn, N puts a setting a run,
as CPU ms a put and s/GB, medians of --runs, each as a share of the archive's setting. Usage:

    nice -n 10 .venv/bin/python -m bench.s3client --requests 100 --runs 3
    nice -n 10 .venv/bin/python -m bench.s3client --requests 0 --store-puts 200 --runs 3
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# weed options an operations team might set, each tried on a server of its own beside the one the tests start.
SERVER_SETTINGS = {
    "volumes preallocated": ("-master.volumePreallocate",),
    "heartbeat 5 s, no IAM API": ("-master.heartbeatInterval=5s", "-s3.iam=false"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests of each kind per run")
    parser.add_argument("--runs", type=int, default=3, help="runs (medians reported)")
    parser.add_argument("--page-kb", type=int, default=500, help="bytes of the page put, in kB")
    parser.add_argument("--store-puts", type=int, default=0,
                        help="puts a setting a run for the object store's own CPU per put (0: not measured)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.requests:
        _clients(args)
    if args.store_puts:
        _store(args)
    return 0


def _clients(args) -> None:
    """The archive's CPU per request, boto3 beside obstore."""
    import obstore

    from central.store.blobs_s3 import S3BlobStore, _RangeReader
    from tests.s3server import SeaweedS3

    root = Path(tempfile.mkdtemp(prefix="quire-bench-s3client-", dir="/tmp"))
    server = SeaweedS3(root / "weed").start()
    try:
        prefix = uuid.uuid4().hex
        store = S3BlobStore(f"s3://{server.bucket}/{prefix}", server.credentials_file(root / "s3.toml"))
        boto, objects, bucket = store.client, store.objects, server.bucket
        page, head = os.urandom(args.page_kb * 1000), _RangeReader.head_bytes
        boto.put_object(Bucket=bucket, Key=f"{prefix}/page", Body=page)
        clients = {
            "boto3": {
                "put": lambda k: boto.put_object(Bucket=bucket, Key=f"{prefix}/b/{k}", Body=page, IfNoneMatch="*"),
                "ranged get": lambda k: boto.get_object(Bucket=bucket, Key=f"{prefix}/page",
                                                        Range=f"bytes=0-{head - 1}")["Body"].read(),
                "list": lambda k: boto.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/none/{k}/"),
                "head": lambda k: boto.head_object(Bucket=bucket, Key=f"{prefix}/page"),
            },
            "obstore": {
                "put": lambda k: obstore.put(objects, f"{prefix}/o/{k}", page, mode="create", use_multipart=False),
                "ranged get": lambda k: obstore.get(objects, f"{prefix}/page", options={"range": (0, head)}).bytes(),
                "list": lambda k: list(obstore.list(objects, f"{prefix}/none/{k}/")),
                "head": lambda k: obstore.head(objects, f"{prefix}/page"),
            },
        }
        found: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for name, ops in clients.items():
                for op, call in ops.items():
                    found.setdefault((name, op), []).append(_per_request(call, args.requests))
        store.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.requests} requests of each kind × {args.runs} runs, page {args.page_kb} kB, SeaweedFS on loopback, "
          f"{os.cpu_count()} cores")
    print(f"{'request':<12} {'boto3 CPU ms':>12} {'obstore CPU ms':>14} {'share':>6} {'boto3 wall ms':>13} "
          f"{'obstore wall ms':>15}")
    for op in clients["boto3"]:
        (b_cpu, b_wall), (o_cpu, o_wall) = (_medians(found[(name, op)]) for name in ("boto3", "obstore"))
        print(f"{op:<12} {b_cpu:12.2f} {o_cpu:14.2f} {o_cpu / b_cpu:6.0%} {b_wall:13.2f} {o_wall:15.2f}")


def _store(args) -> None:
    """SeaweedFS's CPU per create-only put of a page, per request setting and per server setting."""
    from obstore.store import S3Store

    from central.store.blobs_s3 import S3BlobStore
    from tests.s3server import SeaweedS3

    root = Path(tempfile.mkdtemp(prefix="quire-bench-s3store-", dir="/tmp"))
    servers = {"": SeaweedS3(root / "default")}
    servers |= {name: SeaweedS3(root / f"server-{n}", options) for n, (name, options) in
                enumerate(SERVER_SETTINGS.items())}
    page, opened = os.urandom(args.page_kb * 1000), []
    try:
        for server in servers.values():
            server.start()
        default = servers[""]
        # The archive's own client (central/store/blobs_s3.py) for the put as the archive makes it.
        archive = S3BlobStore(f"s3://{default.bucket}/archive", default.credentials_file(root / "s3.toml"))
        opened.append(archive)

        def changed(**options):
            """A client set up as the archive's, but for ``options`` (None: left out)."""
            options = {"checksum_algorithm": "crc64nvme", **options}
            return S3Store(default.bucket, endpoint=default.endpoint, region="us-east-1",
                           virtual_hosted_style_request=False, unsigned_payload=True, access_key_id=default.access_key,
                           secret_access_key=default.secret_key, client_options={"allow_http": True},
                           **{k: v for k, v in options.items() if v is not None})
        settings = {  # name: (server, obstore client, attributes of each put)
            "the archive's client (CRC-64 header)": (default, archive.objects, None),
            "no checksum header": (default, changed(checksum_algorithm=None), None),
            "SHA-256 checksum header": (default, changed(checksum_algorithm="sha256"), None),
            "Content-Type image/jpeg": (default, archive.objects, {"Content-Type": "image/jpeg"}),
            "Content-Type application/octet-stream": (default, archive.objects,
                                                      {"Content-Type": "application/octet-stream"}),
        }
        for name, server in servers.items():
            if name:
                opened.append(S3BlobStore(f"s3://{server.bucket}/archive",
                                          server.credentials_file(server.root / "s3.toml")))
                settings[f"weed: {name}"] = (server, opened[-1].objects, None)
        found: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.runs):
            for name, (server, store, attributes) in settings.items():
                found[name].append(_store_cpu_per_put(server, store, page, attributes, args.store_puts))
    finally:
        for store in opened:
            store.close()
        for server in servers.values():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nSeaweedFS {_weed_version()}: its CPU per create-only put of a {args.page_kb} kB page, {args.store_puts} "
          f"puts a setting × {args.runs} runs taken in turn, weed mini on loopback, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'setting':<46} {'CPU ms/put':>10} {'CPU s/GB':>9} {'vs archive':>10}")
    base = statistics.median(found["the archive's client (CRC-64 header)"])
    for name, runs in found.items():
        cpu = statistics.median(runs)
        print(f"{name:<46} {cpu:10.2f} {cpu * 1e3 / args.page_kb:9.1f} {cpu / base:10.0%}")


def _store_cpu_per_put(server, store, page: bytes, attributes, count: int) -> float:
    """The server process's CPU ms per create-only put of ``page`` (after a few to warm up), with the
    metadata the archive's puts carry (the blob's SHA-256 and SM3) and ``attributes``."""
    import obstore

    attributes = {"sha256": "0" * 64, "sm3": "0" * 64, **(attributes or {})}

    def put(n):
        obstore.put(store, f"bench/{n}-{uuid.uuid4().hex}", page, mode="create", use_multipart=False,
                    attributes=attributes)
    for n in range(3):
        put(f"warm-{n}")
    cpu = _process_cpu(server.proc.pid)
    for n in range(count):
        put(n)
    return (_process_cpu(server.proc.pid) - cpu) / count * 1e3


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _weed_version() -> str:
    import subprocess

    from tests.s3server import WEED

    said = subprocess.run([str(WEED), "version"], capture_output=True, text=True, timeout=30).stdout.split()
    return said[2] if len(said) > 2 else "?"


def _per_request(call, count: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per request of ``call``, after a few to warm the connection pool."""
    for n in range(3):
        call(f"warm-{n}-{uuid.uuid4().hex}")
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(count):
        call(f"{n}-{uuid.uuid4().hex}")
    return (time.process_time() - cpu) / count * 1e3, (time.perf_counter() - wall) / count * 1e3


def _medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


if __name__ == "__main__":
    sys.exit(main())
