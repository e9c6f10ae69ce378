"""Web console speed on a county-sized catalogue: search, a dossier's directory, a watermarked page, 20 readers.

It builds a real archive (SQLite catalogue, blob store) whose catalogue holds --dossiers dossiers and
--pages pages, written in bulk SQL; the pages share the JPEG files a real station scan stored (synthetic
paper through the station's pipeline at the station's resolution). The console runs on 127.0.0.1 in this
process and is measured over HTTP as a browser would use it (signed in, one keep-alive connection each):

- search: a reader's search (archive-number prefixes and names), p50/p95 — goal p95 ≤ 100 ms
- directory: an approved dossier's directory page (by the ten categories), p50/p95 — goal p95 ≤ 100 ms
- page: a watermarked page at 1600 px, median, beside decoding the stored JPEG alone — goal ≤ 3×
- readers: --readers readers at once, each paging through its own dossier (viewer page + image); errors
  must be 0

Usage: .venv/bin/python -m bench.web [--dossiers 10000] [--pages 1000000] [--readers 20]
"""

import argparse
import http.client
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from PIL import Image

from central import access, config, users, web
from central.archive import open_archive
from central.web import imaging
from quire.db import utcnow
from quire.memory import tune_allocator
from station import config as station_config
from station import home as station_home
from station.scan import scan

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文海玉兰春梅德成林"
ITEMS = ["1-1", "1-2", "2-1", "3-1", "3-2", "4-1-1", "4-2-1", "4-3-1", "5-1", "6-1", "6-2", "7-1", "8-1",
         "9-1-1", "9-2-1", "9-3-1", "9-4-1", "10-1", "10-2", "10-3"]
PASSWORD = "bench-口令-2026!"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if args.pages < args.dossiers or min(args.dossiers, args.readers, args.queries) < 1:
        parser.error(f"--pages ({args.pages}) must be at least --dossiers ({args.dossiers}), so every dossier a reader "
                     "opens has a page, and --dossiers, --readers and --queries at least 1")
    tune_allocator()
    with tempfile.TemporaryDirectory(prefix="quire-bench-web-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        files = _scanned_pages(root / "station")
        archive = open_archive(config.load(root / "central"))
        try:
            names = _catalogue(archive, files, args.dossiers, args.pages)
            built = time.perf_counter() - t0
            print(f"catalogue: {args.dossiers:,} dossiers, {args.pages:,} pages sharing {len(files)} stored JPEGs "
                  f"({_size(files[0])}), built in {built:.1f} s")
            readers = _people(archive, args.readers, args.dossiers)
            console = web.start(archive, "127.0.0.1:0", http=True)
            try:
                return _measure(archive, console.url, readers, names, files, args)
            finally:
                console.stop()
        finally:
            archive.close()


def _scanned_pages(home: Path) -> list[Path]:
    """Pages a station stored from synthetic paper (its real pipeline and encoder): the JPEG files."""
    station = station_home.init(station_config.load(home, zeroconf_interfaces=["127.0.0.1"]), "st-bench")
    try:
        scan(station, {"archive_no": "B-0"}, {"item": "1-1", "title": "干部履历表"}, "synthetic:seed=7,sheets=3")
    finally:
        station.close()
    return sorted(station.config.pages_dir.rglob("*.jpg"))


def _size(path: Path) -> str:
    with Image.open(path) as img:
        return f"{img.width}×{img.height} px, {img.info.get('dpi', ('?',))[0]} dpi, {path.stat().st_size // 1024} KB"


def _catalogue(archive, files: list[Path], dossiers: int, pages: int) -> list[str]:
    """Dossiers, materials, bundles and pages in bulk SQL (one transaction); returns the dossiers' names."""
    rng = random.Random(14)
    now = utcnow()
    blobs = []
    for path in files:
        data = path.read_bytes()
        with Image.open(path) as img:
            blobs.append((archive.blobs.put(data), len(data), img.width, img.height,
                          round(img.info.get("dpi", (300,))[0])))
    per_dossier = pages // dossiers
    materials = min(len(ITEMS), per_dossier)
    names = [rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
             for _ in range(dossiers)]
    with archive.catalogue.transaction() as db:
        db.conn.executemany("INSERT INTO blobs (sha256, bytes, stored_at) VALUES (?, ?, ?)",
                       [(sha, size, now) for sha, size, *_ in blobs])
        db.execute("INSERT INTO stations (id, public_key, unit, added_at) VALUES ('st-bench', ?, 'unit-1', ?)",
                   [bytes(32), now])
        db.conn.executemany("INSERT INTO dossiers (archive_no, name, unit, created_at, sex) VALUES (?, ?, ?, ?, ?)",
                       [(_archive_no(d), names[d], f"unit-{d % 10 + 1}", now, "男女"[d % 2]) for d in range(dossiers)])
        material_rows, bundle_rows, page_rows, material_id = [], [], [], 0
        for d in range(dossiers):
            left = per_dossier
            for m in range(materials):
                count = left // (materials - m)
                left -= count
                material_id += 1
                bundle = f"{material_id:064x}"
                bundle_rows.append((bundle, now, now))
                material_rows.append((material_id, _archive_no(d), ITEMS[m], _category(ITEMS[m]),
                                      f"材料 {ITEMS[m]}", count, bundle, now))
                for n in range(1, count + 1):
                    sha, size, w, h, dpi = blobs[(material_id + n) % len(blobs)]
                    page_rows.append((material_id, n, sha, size, "image/jpeg", w, h, dpi, "grey", "{}"))
        db.conn.executemany("INSERT INTO bundles (id, station_id, manifest, signature, state, offered_at, committed_at)"
                       " VALUES (?, 'st-bench', x'7b7d', x'', 'committed', ?, ?)", bundle_rows)
        db.conn.executemany("INSERT INTO materials (id, archive_no, item, category, title, page_count, bundle_id,"
                       " catalogued_at, station_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'st-bench')", material_rows)
        db.conn.executemany("INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", page_rows)
    return names


def _category(item: str) -> str:
    """4-1-1 → 4-1 (4 and 9 only through their sub-categories), 10-2 → 10."""
    parts = item.split("-")
    return "-".join(parts[:2]) if parts[0] in ("4", "9") else parts[0]


def _archive_no(d: int) -> str:
    return f"GB-2026-{d:05d}"


def _people(archive, readers: int, dossiers: int) -> list[tuple[str, int, str]]:
    """Readers with passwords, each with an approved consultation of its own dossier: (id, consultation, no)."""
    users.add(archive, "bench-sec", "保密员", ["security_officer"], ["*"])
    officer = users.enabled(archive, "bench-sec")[0]
    out = []
    for i in range(readers):
        user_id = f"bench-r{i}"
        users.add(archive, user_id, f"查阅人{i}", ["reader"], ["*"])
        users.set_password(archive, user_id, PASSWORD, by="local:bench", must_change=False)
        archive_no = _archive_no((i * 7919) % dossiers)
        c = access.file_request(archive, users.enabled(archive, user_id)[0], archive_no, "性能测试", 1)
        access.decide(archive, officer, c["id"], True, "同意")
        out.append((user_id, c["id"], archive_no))
    return out


class Browser:
    """One signed-in visitor on one keep-alive connection (cookies by hand, no redirects followed)."""

    def __init__(self, url: str, user_id: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.cookies: dict[str, str] = {}
        _, body = self.get("/login")
        token = re.search(rb'name="login_token" value="([^"]*)"', body).group(1).decode()
        status, _ = self.request("POST", "/login", urlencode({"login_token": token, "next": "/", "user": user_id,
                                                              "password": PASSWORD}))
        if status != 303 or "quire_session" not in self.cookies:
            raise SystemExit(f"{user_id} could not sign in (HTTP {status})")

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closed an idle keep-alive connection (after 5 s): a browser opens a new one and asks again.
            self.conn.close()
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or ():
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, data

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def timed(self, path: str) -> float:
        """Seconds to fetch ``path``; anything but 200 ends the benchmark, naming it."""
        t = time.perf_counter()
        status, _ = self.get(path)
        took = time.perf_counter() - t
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}")
        return took


def _measure(archive, url: str, readers, names: list[str], files: list[Path], args) -> int:
    rng = random.Random(3)
    first = Browser(url, readers[0][0])
    queries = [_archive_no(rng.randrange(args.dossiers))[:-1] if i % 2 else rng.choice(names)
               for i in range(args.queries)]
    search = [first.timed(f"/reader?q={quote(q)}") * 1000 for q in queries]
    surname = first.timed(f"/reader?q={quote(names[0][0])}") * 1000
    user_id, cid, archive_no = readers[0]
    directory = [first.timed(f"/read/{cid}/{archive_no}") * 1000 for _ in range(50)]
    pages = _sequence(archive, archive_no)
    served = [first.timed(f"/read/{cid}/{archive_no}/{item}/{n}.jpg") * 1000 for item, n in pages[:40]]
    decode = []
    for path in files * 5:
        t = time.perf_counter()
        with Image.open(path) as img:
            img.load()
        decode.append((time.perf_counter() - t) * 1000)
    lines = ("查阅人0（账号 bench-r0）", f"查阅单第 {cid} 号", "2026年12月2日 20:00")
    render = []
    for path in files * 5:
        t = time.perf_counter()
        imaging.screen_jpeg(path, lines)
        render.append((time.perf_counter() - t) * 1000)
    crowd = _crowd(url, readers, archive)

    p95 = _p95(search)
    print(f"search       p50 {statistics.median(search):7.1f} ms  p95 {p95:7.1f} ms  ({len(search)} queries: "
          f"archive-number prefixes and names)  goal p95 ≤ 100 ms  {'OK' if p95 <= 100 else 'MISSED'}")
    print(f"             one surname alone ({names[0][0]}, {_matches(names, names[0][0])} dossiers listed): "
          f"{surname:.1f} ms")
    d95 = _p95(directory)
    print(f"directory    p50 {statistics.median(directory):7.1f} ms  p95 {d95:7.1f} ms  "
          f"({len(pages)}-page dossier)  goal p95 ≤ 100 ms  {'OK' if d95 <= 100 else 'MISSED'}")
    ratio = statistics.median(served) / statistics.median(decode)
    print(f"page 1600 px median {statistics.median(served):7.1f} ms over HTTP (watermarked, view logged); "
          f"render alone {statistics.median(render):.1f} ms")
    print(f"decode only  median {statistics.median(decode):7.1f} ms (Pillow, the stored JPEG whole)")
    print(f"             ratio {ratio:.2f}×  goal ≤ 3×  {'OK' if ratio <= 3 else 'MISSED'}")
    print(f"readers      {crowd['readers']} at once, {crowd['requests']} requests ({crowd['pages']} pages) in "
          f"{crowd['seconds']:.1f} s: {crowd['pages'] / crowd['seconds']:.1f} pages/s, page p50 "
          f"{crowd['p50']:.0f} ms p95 {crowd['p95']:.0f} ms, errors {crowd['errors']}  "
          f"{'OK' if not crowd['errors'] else 'MISSED'}")
    return 0 if p95 <= 100 and d95 <= 100 and ratio <= 3 and not crowd["errors"] else 1


def _sequence(archive, archive_no: str) -> list[tuple[str, int]]:
    rows = archive.catalogue.query("SELECT item, page_count FROM materials WHERE archive_no = ?", [archive_no])
    return [(r["item"], n) for r in sorted(rows, key=lambda r: [int(x) for x in r["item"].split("-")])
            for n in range(1, r["page_count"] + 1)]


def _crowd(url: str, readers, archive, pages_each: int = 25) -> dict:
    """Every reader pages through its own dossier at once: the viewer page, then its image."""
    errors, times, requests = [], [], [0]
    lock = threading.Lock()
    browsers = [Browser(url, user_id) for user_id, _, _ in readers]
    start = threading.Barrier(len(readers) + 1)

    def read(browser: Browser, cid: int, archive_no: str) -> None:
        start.wait()
        for item, n in _sequence(archive, archive_no)[:pages_each]:
            for path in (f"/read/{cid}/{archive_no}/{item}/{n}", f"/read/{cid}/{archive_no}/{item}/{n}.jpg"):
                t = time.perf_counter()
                try:
                    status, _ = browser.get(path)
                except (OSError, http.client.HTTPException) as exc:
                    status = repr(exc)
                with lock:
                    requests[0] += 1
                    if status != 200:
                        errors.append((path, status))
                    elif path.endswith(".jpg"):
                        times.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=read, args=(b, cid, no)) for b, (_, cid, no) in zip(browsers, readers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for path, status in errors[:5]:
        print(f"  error: GET {path}: {status}", file=sys.stderr)
    return {"readers": len(readers), "requests": requests[0], "pages": len(times),
            "seconds": seconds, "errors": len(errors), "p50": statistics.median(times) if times else 0,
            "p95": _p95(times) if times else 0}


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _matches(names: list[str], text: str) -> int:
    return sum(text in name for name in names)


if __name__ == "__main__":
    sys.exit(main())
