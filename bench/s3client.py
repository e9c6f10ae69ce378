"""S3 clients: the archive's CPU per request with boto3 (as the S3 page store configured it) beside
obstore (as it is configured now), in one run against one SeaweedFS on loopback.

The requests a synced page costs: a create-only put of a page, a ranged GET of a page's head, a
listing of a prefix that holds nothing (a station's partial uploads), a HEAD. Printed per operation:
this process's CPU (every thread: obstore works on threads of its own) and wall time per request,
medians of --runs, and obstore's CPU as a share of boto3's. Usage:

    nice -n 10 .venv/bin/python -m bench.s3client --requests 100 --runs 3
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests of each kind per run")
    parser.add_argument("--runs", type=int, default=3, help="runs (medians reported)")
    parser.add_argument("--page-kb", type=int, default=500, help="bytes of the page put, in kB")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
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
    print(f"{args.requests} requests of each kind × {args.runs} runs, page {args.page_kb} kB, SeaweedFS on loopback, "
          f"{os.cpu_count()} cores")
    print(f"{'request':<12} {'boto3 CPU ms':>12} {'obstore CPU ms':>14} {'share':>6} {'boto3 wall ms':>13} "
          f"{'obstore wall ms':>15}")
    for op in clients["boto3"]:
        (b_cpu, b_wall), (o_cpu, o_wall) = (_medians(found[(name, op)]) for name in ("boto3", "obstore"))
        print(f"{op:<12} {b_cpu:12.2f} {o_cpu:14.2f} {o_cpu / b_cpu:6.0%} {b_wall:13.2f} {o_wall:15.2f}")
    return 0


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
