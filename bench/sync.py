"""Sync throughput: Quire's sync beside a plain TLS socket and raw TCP, on loopback, in one run.

Prints MB/s and client CPU seconds per GB for each, and Quire's figures as ratios to plain TLS,
plus the bytes re-sent after connections are cut. Usage:

    .venv/bin/python -m bench.sync [--mb 500]
"""

import argparse
import io
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="megabytes of pages to send each way")
    parser.add_argument("--runs", type=int, default=3, help="runs per method (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quire-bench-sync-") as tmp:
        root = Path(tmp)
        os.environ["SANE_CONFIG_DIR"] = str(root)  # no scanner needed
        pages = _pages(args.mb)
        total = sum(len(p) for p in pages)
        print(f"{len(pages)} pages, {total / 1e6:.0f} MB, 300 dpi A4 JPEG sizes, loopback, {os.cpu_count()} cores")
        results = {"raw TCP": [], "plain TLS": [], "Quire sync": []}
        for run in range(args.runs):
            results["raw TCP"].append(_socket_run(pages, tls=None))
            results["plain TLS"].append(_socket_run(pages, tls=root / f"tls{run}"))
            results["Quire sync"].append(_quire_run(pages, root / f"quire{run}"))
        _report(results, total)
        _cut_report(root, pages[:40])
    return 0


CHUNK = int(os.environ.get("QUIRE_BENCH_CHUNK", 1 << 20))


def _pages(mb: int) -> list[bytes]:
    """Distinct JPEG files of the size a 300-dpi A4 page compresses to (about 1.5 MB)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (3508 // 4, 2480 // 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(base).resize((2480, 3508)).save(buf, "JPEG", quality=85, dpi=(300, 300))
    head = buf.getvalue()
    out = []
    while sum(len(p) for p in out) < mb * 1_000_000:
        out.append(head + rng.bytes(200_000))  # distinct digests, so nothing dedups
    return out


_server_cpu: list[float] = []


def _proc_cpu(pid: int) -> float:
    """CPU seconds a child process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- plain sockets: a sink in a child process, the sender here ------------------------------------

_SINK = r'''
import socket, ssl, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
if sys.argv[1] != "-":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    conn = ctx.wrap_socket(conn, server_side=True)
want = int.from_bytes(conn.recv(8), "big")
n = 0
while n < want:
    data = conn.recv(1 << 20)
    if not data:
        break
    n += len(data)
conn.sendall(str(n).encode())
'''


def _socket_run(pages: list[bytes], tls: Path | None) -> tuple[float, float, str]:
    args = ["-", "-"]
    if tls is not None:
        from central.tls import load_or_create

        ident = load_or_create(tls)
        args = [str(tls / "cert.pem"), str(tls / "key.pem")]
        assert ident.cert_pem
    sink = subprocess.Popen([sys.executable, "-c", _SINK, *args], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())
    cpu0, t0 = _cpu(), time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    cipher = "none"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(tls / "cert.pem")
        ctx.check_hostname = False
        sock = ctx.wrap_socket(sock)
        cipher = sock.cipher()[0]
    sock.sendall(sum(len(p) for p in pages).to_bytes(8, "big"))
    for page in pages:
        sock.sendall(page)
    assert int(sock.recv(64)) == sum(len(p) for p in pages)
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    sock.close()
    sink.wait()
    return seconds, cpu, cipher


# -- Quire: a real central service process, this process as the station --------------------------

def _quire_run(pages: list[bytes], root: Path) -> tuple[float, float, str]:
    from central import stations as _unused  # noqa: F401 - import cost outside the timing
    from station import config, home, outbox
    from station.enrol import enroll
    from station.pipeline import ProcessedPage
    from station.sync import sync

    central_home = root / "central"
    exe = Path(sys.executable).parent / "quire-central"
    server = subprocess.Popen([str(exe), "--home", str(central_home), "serve", "--listen", "127.0.0.1:0",
                               "--no-advertise"], stdout=subprocess.PIPE, text=True)
    address = server.stdout.readline().strip().removeprefix("listening on ")
    try:
        st = home.init(config.load(root / "station", central=address, chunk_bytes=CHUNK), "st-bench")
        subprocess.run([str(exe), "--home", str(central_home), "stations", "add", "st-bench", "--key",
                        st.public_key.hex(), "--unit", "bench"], check=True, stdout=subprocess.DEVNULL)
        enroll(st, address)
        per_material = 20
        for m in range(0, len(pages), per_material):
            batch = st.store.open_batch({"archive_no": "B-1"}, {"item": f"1-{m // per_material + 1}", "title": "b"},
                                        "bench", "bench")
            for n, data in enumerate(pages[m:m + per_material], 1):
                record = {"skew_deg": 0.0, "rotation_deg": 0.0, "orientation": 0, "crop": None, "blank": False,
                          "blank_score": 5.0, "colour": "colour", "colour_reason": "bench", "codec": "jpeg",
                          "dpi": 300, "bytes": len(data), "seconds": 0.0}
                st.store.add_page(batch.id, n, ProcessedPage(data, "image/jpeg", ".jpg", 2480, 3508, 300,
                                                             "colour", record))
            outbox.seal_batch(st.store, batch.id, st.station_id, st.key)
        cpu0, t0, server0 = _cpu(), time.perf_counter(), _proc_cpu(server.pid)
        report = sync(st)
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        _server_cpu.append(_proc_cpu(server.pid) - server0)
        assert len(report.committed) == len(outbox.bundles(st.store)), report
        st.close()
    finally:
        server.terminate()
        server.wait()
    return seconds, cpu, "TLS 1.3 (gRPC, pinned)"


def _report(results: dict, total: int) -> None:
    gb = total / 1e9
    rows = {}
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rows[name] = (total / 1e6 / seconds, cpu / gb, runs[0][2])
    tls_rate, tls_cpu, _ = rows["plain TLS"]
    print(f"\n{'method':<12} {'MB/s':>8} {'CPU s/GB':>9} {'rate vs TLS':>12} {'CPU vs TLS':>11}  cipher")
    for name, (rate, cpu, cipher) in rows.items():
        print(f"{name:<12} {rate:>8.0f} {cpu:>9.2f} {rate / tls_rate:>11.0%} {cpu / tls_cpu:>10.2f}×  {cipher}")
    if _server_cpu:
        print(f"{'':<12} archive side: {statistics.median(_server_cpu) / gb:.2f} CPU s/GB "
              "(verifies every digest, fsyncs, catalogues)")
    rate, cpu, _ = rows["Quire sync"]
    print(f"\ngoals: Quire ≥ 60 % of plain-TLS throughput ({rate / tls_rate:.0%}), "
          f"≤ 2× its CPU per GB ({cpu / tls_cpu:.2f}×); medians of {len(results['raw TCP'])} runs")


def _cut_report(root: Path, pages: list[bytes]) -> None:
    """Bytes re-sent beyond the cut points when connections are cut at random."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.netfaults import FaultyProxy

    from station import config, home, outbox
    from station.enrol import enroll
    from station.pipeline import ProcessedPage
    from station.sync import sync

    central_home = root / "cut-central"
    exe = Path(sys.executable).parent / "quire-central"
    server = subprocess.Popen([str(exe), "--home", str(central_home), "serve", "--listen", "127.0.0.1:0",
                               "--no-advertise"], stdout=subprocess.PIPE, text=True)
    address = server.stdout.readline().strip().removeprefix("listening on ")
    proxy = FaultyProxy(address, cut_after=(1_000_000, 8_000_000), seed=5, max_faults=10)
    try:
        st = home.init(config.load(root / "cut-station", central=address, backoff_base_s=0.01,
                                   sync_attempts=50), "st-cut")
        subprocess.run([str(exe), "--home", str(central_home), "stations", "add", "st-cut", "--key",
                        st.public_key.hex(), "--unit", "bench"], check=True, stdout=subprocess.DEVNULL)
        enroll(st, address)
        batch = st.store.open_batch({"archive_no": "C-1"}, {"item": "1-1", "title": "c"}, "bench", "bench")
        for n, data in enumerate(pages, 1):
            st.store.add_page(batch.id, n, ProcessedPage(data, "image/jpeg", ".jpg", 2480, 3508, 300, "colour",
                                                         {"dpi": 300, "bytes": len(data), "colour": "colour"}))
        outbox.seal_batch(st.store, batch.id, st.station_id, st.key)
        report = sync(st, proxy.address, sleep=lambda s: None)
        total = sum(len(p) for p in pages)
        extra = report.bytes_sent - total
        print(f"\ncuts: {proxy.cuts} connections cut at random points; {report.bytes_sent / 1e6:.1f} MB sent for "
              f"{total / 1e6:.1f} MB of pages; re-sent {extra / 1e3:.0f} kB = {extra / max(proxy.cuts, 1) / 1e3:.0f} kB "
              f"per cut (one chunk is {st.config.chunk_bytes / 1e3:.0f} kB)")
        st.close()
    finally:
        proxy.close()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
