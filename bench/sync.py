"""Sync throughput: Quire's sync beside a plain TLS socket and raw TCP, in one run.

On loopback it prints MB/s and client CPU seconds per GB for each, Quire's figures as ratios to
plain TLS (medians of --runs), and the bytes re-sent after connections are cut. Every sender reads
the page files as the station does, a chunk at a time. With --link-mbit it
runs the same senders over a shaped veth link between two network namespaces it creates (central
side 10.213.0.2, sender side 10.213.0.1, tc tbf on the sender's egress) and reports throughput as
a share of the link rate; the namespaces are removed on exit. Usage (the link mode needs root):

    .venv/bin/python -m bench.sync --mb 500 --runs 3
    .venv/bin/python -m bench.sync --mb 100 --runs 3 --link-mbit 100
"""

import argparse
import io
import os
import resource
import shutil
import signal
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

from quire.memory import tune_allocator
from station.config import StationConfig

CENTRAL_ADDR, SENDER_ADDR = "10.213.0.2", "10.213.0.1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="megabytes of pages to send each way")
    parser.add_argument("--runs", type=int, default=3, help="runs per method (median reported)")
    parser.add_argument("--link-mbit", type=float, default=None,
                        help="send over a veth link shaped to this rate (tc tbf) between two new network "
                             "namespaces instead of loopback; needs root and iproute2")
    parser.add_argument("--link-delay-ms", type=float, default=0.0,
                        help="with --link-mbit: one-way delay (tc netem) added on the central side")
    parser.add_argument("--in-namespace", help=argparse.SUPPRESS)  # the sender half of --link-mbit
    args = parser.parse_args()
    # The allocator limits quire-station and quire-central set at start; every sender here runs with them.
    tune_allocator()
    if args.link_mbit and not args.in_namespace:
        return _shaped(args)
    host = CENTRAL_ADDR if args.in_namespace else "127.0.0.1"
    at_central = ["ip", "netns", "exec", args.in_namespace] if args.in_namespace else []
    with tempfile.TemporaryDirectory(prefix="quire-bench-sync-") as tmp:
        root = Path(tmp)
        os.environ["SANE_CONFIG_DIR"] = str(root)  # no scanner needed
        pages = _pages(args.mb)
        total = sum(len(p) for p in pages)
        where = (f"veth link shaped to {args.link_mbit:g} Mbit/s (tbf), +{args.link_delay_ms:g} ms delay"
                 if args.in_namespace else "loopback")
        print(f"{len(pages)} pages, {total / 1e6:.0f} MB, 300 dpi A4 JPEG sizes, {where}, {os.cpu_count()} cores, "
              f"{CHUNK >> 10} KiB chunks", flush=True)
        # Plain TLS gets the cipher suite Quire's own connection negotiates, not OpenSSL's first choice.
        suite = grpc_suite(root / "probe")
        results = {"raw TCP": [], "plain TLS": [], "Quire sync": []}
        for run in range(args.runs):
            results["raw TCP"].append(_socket_run(pages, root / f"tcp{run}", None, host, at_central))
            results["plain TLS"].append(_socket_run(pages, root / f"tls{run}", suite, host, at_central))
            results["Quire sync"].append(_quire_run(pages, root / f"quire{run}", host, at_central, suite))
        _report(results, total, args.link_mbit if args.in_namespace else None)
        if not args.in_namespace:
            _cut_report(root, pages[:40])
    return 0


def _shaped(args) -> int:
    """Create the namespace pair and shaped link, run the senders inside, remove it all again."""
    tag = str(os.getpid())
    cen, snd = f"quire-bench-cen-{tag}", f"quire-bench-snd-{tag}"
    veth_cen, veth_snd = f"qbc{tag}"[:15], f"qbs{tag}"[:15]
    # SIGTERM (and SIGHUP) unwind through finally like Ctrl-C does, so the namespaces go too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    made = []
    try:
        for ns in (cen, snd):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", veth_snd, "netns", snd, "type", "veth", "peer", "name", veth_cen, "netns", cen)
        for ns, dev, addr in ((cen, veth_cen, CENTRAL_ADDR), (snd, veth_snd, SENDER_ADDR)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        # tbf's burst must hold a whole GSO super-packet (up to 64 KiB on veth) or those are dropped.
        _run("tc", "-n", snd, "qdisc", "add", "dev", veth_snd, "root", "tbf", "rate", f"{args.link_mbit:g}mbit",
             "burst", "256kb", "latency", "50ms")
        if args.link_delay_ms:
            _run("tc", "-n", cen, "qdisc", "add", "dev", veth_cen, "root", "netem", "delay", f"{args.link_delay_ms:g}ms")
        worker = ["ip", "netns", "exec", snd, sys.executable, "-m", "bench.sync", "--mb", str(args.mb),
                  "--runs", str(args.runs), "--link-mbit", f"{args.link_mbit:g}",
                  "--link-delay-ms", f"{args.link_delay_ms:g}", "--in-namespace", cen]
        # Its own process group, so that the archives and sinks it starts inside the namespaces end with it.
        proc = subprocess.Popen(worker, cwd=Path(__file__).resolve().parents[1], start_new_session=True)
        try:
            return proc.wait()
        finally:
            _end_group(proc)
    finally:
        for ns in reversed(made):  # deleting a namespace deletes its end of the veth pair, and so both
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _end_group(proc: subprocess.Popen) -> None:
    """Stop what is left of the worker's process group: TERM, then KILL after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # the worker may be gone while its children still exit


def _ip(*args: str) -> None:
    _run("ip", *args)


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}; the link mode needs root, iproute2 "
                         "(apt-get install iproute2) and the kernel's tbf qdisc (netem too for --link-delay-ms)")


# The station's own default unless QUIRE_BENCH_CHUNK says otherwise.
CHUNK = int(os.environ.get("QUIRE_BENCH_CHUNK", 0)) or StationConfig.model_fields["chunk_bytes"].default


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
listener = socket.create_server((sys.argv[3], 0))
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


def _socket_run(pages: list[bytes], root: Path, suite: str | None, host: str = "127.0.0.1",
                at_central: list[str] = ()) -> tuple[float, float, str]:
    """Send the pages from files of this run's own (removed afterwards, as a Quire run's are), over
    TLS with cipher ``suite`` or, with None, over bare TCP."""
    root.mkdir()
    try:
        return _send_files(_write_files(pages, root / "pages"), root, suite, host, at_central)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_files(pages: list[bytes], folder: Path) -> list[Path]:
    folder.mkdir()
    files = [folder / f"{n}.jpg" for n in range(len(pages))]
    for path, page in zip(files, pages):
        path.write_bytes(page)
    return files


def _send_files(files: list[Path], tls: Path, suite: str | None, host: str,
                at_central: list[str]) -> tuple[float, float, str]:
    """Send ``files`` to a sink process: over TLS with cipher ``suite`` (its key and certificate in
    ``tls``), or with None over bare TCP."""
    args, env = ["-", "-"], None
    if suite is not None:
        from central.tls import load_or_create

        ident = load_or_create(tls)
        args = [str(tls / "cert.pem"), str(tls / "key.pem")]
        assert ident.cert_pem
        # Python's ssl cannot choose TLS 1.3 suites; OpenSSL's configuration can, for the sink's process.
        conf = tls / "openssl.cnf"
        conf.write_text("openssl_conf = bench\n[bench]\nssl_conf = ssl\n[ssl]\nsystem_default = tls\n"
                        f"[tls]\nCiphersuites = {suite}\n")
        env = dict(os.environ, OPENSSL_CONF=str(conf))
    sink = subprocess.Popen([*at_central, sys.executable, "-c", _SINK, *args, host], stdout=subprocess.PIPE,
                            text=True, env=env)
    port = int(sink.stdout.readline())
    os.sync()  # each sender starts with no other writes pending on the disk (see _quire_run)
    cpu0, t0 = _cpu(), time.perf_counter()
    sock = socket.create_connection((host, port))
    cipher = "none"
    if suite is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(tls / "cert.pem")
        ctx.check_hostname = False
        sock = ctx.wrap_socket(sock)
        cipher = sock.cipher()[0]
        if cipher != suite:
            raise SystemExit(f"plain TLS negotiated {cipher}, not {suite} as Quire's connection does; "
                             "this OpenSSL ignores OPENSSL_CONF's Ciphersuites")
    total = sum(path.stat().st_size for path in files)
    sock.sendall(total.to_bytes(8, "big"))
    # Like the station, read each page from its file (in the page cache) in chunks and send it.
    for path in files:
        with open(path, "rb") as fh:
            while data := fh.read(CHUNK):
                sock.sendall(data)
    assert int(sock.recv(64)) == total
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    sock.close()
    sink.wait()
    return seconds, cpu, cipher


# -- the cipher suite gRPC negotiates --------------------------------------------------------------

_SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
           0x1303: "TLS_CHACHA20_POLY1305_SHA256"}


def grpc_suite(root: Path) -> str:
    """The TLS 1.3 cipher suite a station's channel and a real archive agree on (gRPC's BoringSSL
    chooses it and says so nowhere): read from the archive's ServerHello through a relay."""
    import grpc

    from station.transport import TLS_NAME

    server, address = _serve(root / "central", "127.0.0.1", [])
    listener = socket.create_server(("127.0.0.1", 0))
    first = bytearray()

    def relay():
        conn, _ = listener.accept()
        with conn, socket.create_connection(address.rsplit(":", 1)) as up:
            threading.Thread(target=_pump, args=(conn, up, None), daemon=True).start()
            _pump(up, conn, first)

    threading.Thread(target=relay, daemon=True).start()
    cert = (root / "central" / "tls" / "cert.pem").read_bytes()
    channel = grpc.secure_channel(f"127.0.0.1:{listener.getsockname()[1]}", grpc.ssl_channel_credentials(cert),
                                  options=[("grpc.ssl_target_name_override", TLS_NAME)])
    try:
        grpc.channel_ready_future(channel).result(timeout=30)   # the handshake is all that is needed
    finally:
        channel.close()
        listener.close()
        server.terminate()
        server.wait()
    # TLS record (type 22 = handshake, 5 bytes) > handshake (type 2 = ServerHello, 4 bytes) >
    # version (2), random (32), session id (1 + its length), then the two bytes of the cipher suite.
    if len(first) < 44 or first[0] != 22 or first[5] != 2:
        raise SystemExit(f"no TLS ServerHello from the archive at {address} (got {bytes(first[:8]).hex()})")
    at = 5 + 4 + 2 + 32 + 1 + first[43]
    code = int.from_bytes(first[at:at + 2], "big")
    if code not in _SUITES:
        raise SystemExit(f"gRPC negotiated cipher suite 0x{code:04x}, which Python's ssl cannot be given")
    return _SUITES[code]


def _pump(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
    try:
        while data := src.recv(1 << 16):
            if keep is not None and len(keep) < 4096:
                keep.extend(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


# -- Quire: a real central service process, this process as the station --------------------------

def _serve(central_home: Path, host: str, at_central: list[str]) -> tuple[subprocess.Popen, str]:
    """`quire-central serve` on port 0; the process and the address it listens on."""
    exe = Path(sys.executable).parent / "quire-central"
    # `ip netns exec` execs the command, so the process's pid is the archive's own (for its CPU figure).
    server = subprocess.Popen([*at_central, str(exe), "--home", str(central_home), "serve", "--listen", f"{host}:0",
                               "--no-advertise"], stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().strip().removeprefix("listening on ")


def sealed_station(pages: list[bytes], at: Path, central_home: Path, address: str):
    """A station at ``at``, registered with and enrolled in the archive at ``address`` (home ``central_home``),
    holding ``pages`` sealed in bundles of 20, flushed to disk; the caller syncs and closes it."""
    from station import config, home, outbox
    from station.enrol import enroll

    st = home.init(config.load(at, central=address, chunk_bytes=CHUNK), "st-bench")
    subprocess.run([str(Path(sys.executable).parent / "quire-central"), "--home", str(central_home), "stations", "add",
                    "st-bench", "--key", st.public_key.hex(), "--unit", "bench"], check=True, stdout=subprocess.DEVNULL)
    enroll(st, address)
    per_material = 20
    for m in range(0, len(pages), per_material):
        batch = st.store.open_batch({"archive_no": "B-1"}, {"item": f"1-{m // per_material + 1}", "title": "b"},
                                    "bench", "bench")
        for n, data in enumerate(pages[m:m + per_material], 1):
            st.store.add_page(batch.id, n, _page(data))
        outbox.seal_batch(st.store, batch.id, st.station_id, st.key)
    # Storing the batch just now left hundreds of MB waiting to be written back; flushed here, they
    # would otherwise stall the archive's fsyncs in the timed run (station and archive share a disk here).
    os.sync()
    return st


def _quire_run(pages: list[bytes], root: Path, host: str = "127.0.0.1",
               at_central: list[str] = (), suite: str = "TLS 1.3") -> tuple[float, float, str]:
    from central import stations as _unused  # noqa: F401 - import cost outside the timing
    from station import outbox
    from station.sync import sync

    central_home = root / "central"
    server, address = _serve(central_home, host, at_central)
    try:
        st = sealed_station(pages, root / "station", central_home, address)
        cpu0, t0, server0 = _cpu(), time.perf_counter(), _proc_cpu(server.pid)
        report = sync(st)
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        _server_cpu.append(_proc_cpu(server.pid) - server0)
        assert len(report.committed) == len(outbox.bundles(st.store)), report
        st.close()
    finally:
        server.terminate()
        server.wait()
        # Both copies of the batch go: left behind, runs' page caches pile up, and on this kind of VM
        # every later run's writes slowed to half speed (measured: 330 MB/s → 190 MB/s from run 2 on).
        shutil.rmtree(root, ignore_errors=True)
    return seconds, cpu, f"{suite} (gRPC, pinned)"


def _page(data: bytes):
    """A processed 300-dpi A4 colour page of these bytes, with the record the archive's profile requires."""
    from station.pipeline import ProcessedPage

    record = {"skew_deg": 0.0, "rotation_deg": 0.0, "orientation": 0, "crop": None, "blank": False,
              "blank_score": 5.0, "colour": "colour", "colour_reason": "bench", "codec": "jpeg",
              "colour_evidence": {"found_percent": {"red": 1.2}, "grey_source": False, "policy": "auto"},
              "dpi": 300, "dpi_source": "scanner", "bytes": len(data), "seconds": 0.0}
    return ProcessedPage(data, "image/jpeg", ".jpg", 2480, 3508, 300, "colour", record)


def _report(results: dict, total: int, link_mbit: float | None = None) -> None:
    gb = total / 1e9
    rows = {}
    for name, runs in results.items():
        rates = [total / 1e6 / r[0] for r in runs]
        rows[name] = (statistics.median(rates), statistics.median(r[1] for r in runs) / gb, runs[0][2],
                      min(rates), max(rates))
    tls_rate, tls_cpu = rows["plain TLS"][:2]
    link = f" {'of link':>8}" if link_mbit else ""
    print(f"\n{'method':<12} {'MB/s':>8} {'(min–max)':>13}{link} {'CPU s/GB':>9} {'rate vs TLS':>12} "
          f"{'CPU vs TLS':>11}  cipher")
    for name, (rate, cpu, cipher, low, high) in rows.items():
        share = f" {rate * 8 / link_mbit:>8.0%}" if link_mbit else ""
        print(f"{name:<12} {rate:>8.1f} {f'({low:.0f}–{high:.0f})':>13}{share} {cpu:>9.2f} {rate / tls_rate:>11.0%} "
              f"{cpu / tls_cpu:>10.2f}×  {cipher}")
    if _server_cpu:
        print(f"{'':<12} archive side: {statistics.median(_server_cpu) / gb:.2f} CPU s/GB "
              "(verifies every digest, fsyncs, catalogues)")
    rate, cpu = rows["Quire sync"][:2]
    runs = len(results["raw TCP"])
    if link_mbit:
        # Per GB, a slow link costs more CPU (wake-ups per chunk spread over a longer time); the CPU
        # goal is the loopback one, where the senders' own costs are what is measured.
        print(f"\nlink {link_mbit:g} Mbit/s = {link_mbit / 8:.1f} MB/s of wire bytes (payload share excludes "
              f"TCP/IP, TLS and HTTP/2 overhead): Quire {rate * 8 / link_mbit:.0%}, plain TLS "
              f"{tls_rate * 8 / link_mbit:.0%}; goal: Quire ≥ 90 % of the link; medians of {runs} runs", flush=True)
        return
    print(f"goals: Quire ≥ 60 % of plain-TLS throughput ({rate / tls_rate:.0%}), "
          f"≤ 2× its CPU per GB ({cpu / tls_cpu:.2f}×); medians of {runs} runs", flush=True)


def _cut_report(root: Path, pages: list[bytes]) -> None:
    """Bytes sent again after connections are cut at random, measured on the wire into the archive.

    The same pages go through the proxy twice, once untouched and once with cuts; what reached the
    archive beyond the clean run's bytes was sent twice (the part of each cut that must be resent,
    plus reconnecting and offering again). Bytes the station had handed to gRPC but that never left
    it are counted apart: they never passed the cut point.
    """
    clean, _ = _through_proxy(root / "clean", pages, {})
    cut, report = _through_proxy(root / "cut", pages, {"cut_after": (1_000_000, 8_000_000), "seed": 5,
                                                       "max_faults": 10})
    total, chunk = sum(len(p) for p in pages), CHUNK
    cuts = max(cut.cuts, 1)
    again = cut.upstream_bytes - clean.upstream_bytes
    print(f"\ncuts: {cut.cuts} connections cut at random points while sending {total / 1e6:.1f} MB of pages; "
          f"{cut.upstream_bytes / 1e6:.1f} MB reached the archive on the wire (uncut: {clean.upstream_bytes / 1e6:.1f} MB)"
          f"\n  sent again beyond the cut points: {again / 1e3:.0f} kB = {again / cuts / 1e3:.0f} kB per cut = "
          f"{again / cuts / chunk:.2f} chunks of {chunk >> 10} KiB (goal ≤ 1)"
          f"\n  page bytes the station handed to gRPC twice: {(report.bytes_sent - total) / cuts / chunk:.2f} chunks "
          "per cut (with what was still in its own buffers at the cut, which never reached the archive)", flush=True)


def _through_proxy(root: Path, pages: list[bytes], faults: dict):
    """Sync one bundle of ``pages`` to a fresh archive through a FaultyProxy; return (proxy, report)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.netfaults import FaultyProxy

    from station import config, home, outbox
    from station.enrol import enroll
    from station.sync import sync

    central_home = root / "central"
    exe = Path(sys.executable).parent / "quire-central"
    server = subprocess.Popen([str(exe), "--home", str(central_home), "serve", "--listen", "127.0.0.1:0",
                               "--no-advertise"], stdout=subprocess.PIPE, text=True)
    address = server.stdout.readline().strip().removeprefix("listening on ")
    try:
        st = home.init(config.load(root / "station", central=address, backoff_base_s=0.01,
                                   chunk_bytes=CHUNK), "st-cut")
        subprocess.run([str(exe), "--home", str(central_home), "stations", "add", "st-cut", "--key",
                        st.public_key.hex(), "--unit", "bench"], check=True, stdout=subprocess.DEVNULL)
        enroll(st, address)
        batch = st.store.open_batch({"archive_no": "C-1"}, {"item": "1-1", "title": "c"}, "bench", "bench")
        for n, data in enumerate(pages, 1):
            st.store.add_page(batch.id, n, _page(data))
        outbox.seal_batch(st.store, batch.id, st.station_id, st.key)
        proxy = FaultyProxy(address, **faults)
        try:
            report = sync(st, proxy.address, sleep=lambda s: None)
        finally:
            proxy.close()
        assert len(report.committed) == 1, report
        st.close()
    finally:
        server.terminate()
        server.wait()
    return proxy, report

if __name__ == "__main__":
    sys.exit(main())
