"""The end-to-end demo: a central service and a station on embedded defaults, pages scanned,
processed, signed, synced and verified, then a readable summary. Leaves nothing behind."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNIT = "中共示范县委组织部"
# Two dossiers (档案), several materials each, with real category codes.
PLAN = [
    ({"archive_no": "GB-2026-0001", "name": "张建国"}, [
        ("1-1", "干部履历表", 2),
        ("4-1-2", "大学本科毕业证书、学位证书", 1),
        ("9-2-1", "干部任免审批表", 2),
    ]),
    ({"archive_no": "GB-2026-0002", "name": "李秀英"}, [
        ("1-1", "干部履历表", 1),
        ("2-1", "自传", 2),
        ("6-1", "入党志愿书", 1),
    ]),
]
SANE_MATERIAL = ("GB-2026-0002", "10-1", "其他可供组织参考的材料（扫描仪 ADF 批次）")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Quire end to end on embedded defaults.")
    parser.add_argument("--keep", action="store_true", help="keep the demo's state directory")
    parser.add_argument("--materials", type=int, default=sum(len(m) for _, m in PLAN), metavar="N",
                        help="scan only the first N synthetic materials of the plan (default: all of them); "
                             "the SANE batch is scanned either way")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="quire-demo-"))
    sane_dir = root / "sane"
    sane_dir.mkdir()
    # SANE's own `test` backend, enabled privately so the real libsane path runs.
    (sane_dir / "dll.conf").write_text("test\n")
    os.environ["SANE_CONFIG_DIR"] = str(sane_dir)
    central_cli = [sys.executable, "-m", "central.cli", "--home", str(root / "central")]
    server = None
    try:
        started = time.monotonic()
        # zeroconf announces on loopback only: the demo never sends mDNS out of this machine.
        server = subprocess.Popen(central_cli + ["serve", "--listen", "127.0.0.1:0",
                                                 "--zeroconf-interface", "127.0.0.1",
                                                 "--web", "127.0.0.1:0", "--web-http"],
                                  stdout=subprocess.PIPE, text=True)
        first = server.stdout.readline().strip()
        if not first.startswith("listening on "):
            raise SystemExit(f"central service did not start: {first!r}")
        address = first.removeprefix("listening on ")
        fingerprint = server.stdout.readline().strip().removeprefix("key fingerprint ")
        console = server.stdout.readline().strip().removeprefix("web on ")
        return _run(root, address, fingerprint, central_cli, started, console, args.materials)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        if args.keep:
            print(f"state kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, address: str, fingerprint: str, central_cli: list[str], started: float, console: str,
         materials: int) -> int:
    from quire import keys

    from . import config, home
    from .discovery import find_central
    from .enrol import enroll
    from .scan import scan
    from .sync import sync

    (root / "station").mkdir()
    (root / "station" / "station.toml").write_text(
        'operator = "demo-operator"\nzeroconf_interfaces = ["127.0.0.1"]\n'
        '[sane_options]\ntest_picture = "Color pattern"\n'
    )
    cfg = config.load(root / "station")
    station = home.init(cfg, "st-demo-01")
    print(f"Quire end-to-end demo  (state in {root})")
    print(f"  central  {address}  key {fingerprint[:23]}…  TLS, announced by zeroconf on 127.0.0.1")
    print(f"  station  {station.station_id}  key {keys.fingerprint(station.public_key)[:23]}…")
    print(f"  console  {console}  (the web console, plain HTTP on loopback only)")

    print("\nEnrolling")
    found = find_central(cfg, fingerprint=fingerprint)
    asked = enroll(station, found)
    print(f"  station found the archive at {found} by zeroconf; pairing code {asked.pairing_code} ({asked.state})")
    waiting = subprocess.run(central_cli + ["stations", "pending"], capture_output=True, text=True, check=True)
    if asked.pairing_code not in waiting.stdout:
        raise SystemExit(f"the archive does not list pairing code {asked.pairing_code}:\n{waiting.stdout}")
    subprocess.run(central_cli + ["stations", "approve", asked.pairing_code, "--unit", UNIT],
                   check=True, stdout=subprocess.DEVNULL)
    done = enroll(station, found)
    print(f"  operator compared the code and approved it: {done.state}, unit {done.unit}; "
          "archive key and TLS certificate pinned")
    results = []
    seed = 0
    print("\nScanning")
    for dossier, plan in PLAN:
        for item, title, sheets in plan:
            seed += 1
            if seed > materials:
                break
            results.append(scan(station, dossier, {"item": item, "title": title},
                                f"synthetic:seed={seed},sheets={sheets}"))
            _print_scan(dossier["archive_no"], item, title, results[-1], "synthetic")
    archive_no, item, title = SANE_MATERIAL
    results.append(scan(station, {"archive_no": archive_no}, {"item": item, "title": title}, "sane:test:0"))
    _print_scan(archive_no, item, title, results[-1], "SANE test ADF")
    scanned_at = time.monotonic()

    print("\nSyncing")
    report = sync(station)
    synced_at = time.monotonic()
    print(f"  {len(report.committed)} bundles committed, {report.bytes_sent / 1e6:.1f} MB sent over TLS with "
          f"signed calls, receipts verified against the pinned archive key")
    for bundle_id, reason in {**report.rejected, **report.failed}.items():
        print(f"  NOT COMMITTED {bundle_id[:12]}: {reason}")

    print("\nVerifying (quire-central verify)")
    verify = subprocess.run(central_cli + ["verify"], capture_output=True, text=True)
    for line in verify.stdout.splitlines():
        print("  " + line)
    verified_at = time.monotonic()
    listing = subprocess.run(central_cli + ["ls"], capture_output=True, text=True, check=True)
    print("\nCatalogue (quire-central ls)")
    for line in listing.stdout.splitlines():
        print("  " + line)
    station.close()

    records = [r for res in results for r in res.records]
    pages = len(records)
    dossiers = len(listing.stdout.splitlines()) - 1  # table rows below the header
    found = re.search(r"(\d+) pages — OK", verify.stdout)
    verified = int(found.group(1)) if verify.returncode == 0 and found else 0
    stored = sum(r.bytes for r in results)
    raw = sum(r.raw_bytes for r in results)
    colour = {m: sum(1 for r in records if r["colour"] == m) for m in ("colour", "grey", "bilevel")}
    ok = verify.returncode == 0 and len(report.committed) == len(results) and verified == pages
    print("\nSummary")
    print(f"  pages scanned       {pages}  ({pages - results[-1].pages} synthetic A4 300 dpi, "
          f"{results[-1].pages} from the SANE test ADF until empty)")
    print(f"  bytes               {raw / 1e6:.0f} MB captured → {stored / 1e6:.1f} MB stored "
          f"({raw / max(stored, 1):.0f}:1, JPEG with dpi in the header)")
    print(f"  blank pages         {sum(r['blank'] for r in records)} flagged and kept")
    print(f"  colour decisions    {colour['colour']} colour · {colour['grey']} grey · {colour['bilevel']} bilevel")
    print(f"  bundles             {len(results)} sealed, {len(report.committed)} committed with signed receipts")
    print(f"  pages verified      {verified} of {pages} by the central service "
          f"(blobs re-hashed, signatures checked) in {dossiers} dossiers")
    cap = sum(r.capture_s for r in results)
    proc = sum(r.process_s for r in results)
    sto = sum(r.store_s for r in results)
    print(f"  time                {verified_at - started:.1f} s: scan {scanned_at - started:.1f} s "
          f"(capture {cap:.1f}, process {proc:.1f}, store {sto:.1f}), sync {synced_at - scanned_at:.1f} s, "
          f"verify {verified_at - synced_at:.1f} s")
    print(f"  result              {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def _print_scan(archive_no: str, item: str, title: str, result, source: str) -> None:
    blanks = sum(r["blank"] for r in result.records)
    colour = sum(r["colour"] == "colour" for r in result.records)
    skews = [abs(r["skew_deg"]) for r in result.records if not r["blank"]]
    print(f"  {archive_no} {item:<6} {result.total_pages:>2} pages ({blanks} blank, {colour} colour, "
          f"max skew {max(skews, default=0):.1f}°) {source:<13} → bundle {result.bundle_id[:12]}  {title}")


if __name__ == "__main__":
    sys.exit(main())
