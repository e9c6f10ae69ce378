"""What the kiosk costs the station: pages per minute with and without a browser streaming the thumbnails.

One real ``quire-station daemon`` process (its kiosk on 127.0.0.1, port 0) scans the same --pages pages
again and again, each run a new material asked for on the daemon's control socket, as 'quire-station scan'
asks. Its source is a folder of pages the synthetic source rendered beforehand at --dpi, stored as
uncompressed TIFF, so the scanner's pixels cost the station next to nothing, as a real scanner's do.
Runs alternate (the order flipping each round) between:

- none: nobody has the kiosk open;
- kiosk: a signed-in client holds the kiosk's event stream (/events) open, as the kiosk page does, and
  fetches each page's thumbnail the moment its event arrives, on a keep-alive connection as a browser would.

Printed: each run's seconds, pages per minute and the station process's CPU seconds per page (user +
system, from /proc: the kiosk serves from that process), then the medians and kiosk ÷ none — of pages
per minute (the goal: ≥ 0.95, the kiosk costing at most 5 %), of each round's pair of runs, and of CPU
per page. On a machine shared with other work the wall-clock figures move with its load; CPU seconds
per page move far less, and on a station that is busy scanning pages per minute follow them. The client
runs in this process, on the same cores, as a browser on the station's own touchscreen would (a
browser's own rendering is not counted).

Usage: .venv/bin/python -m bench.kiosk [--pages 24] [--rounds 5] [--dpi 300]
"""

import argparse
import http.client
import os
import html
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from PIL import Image

from station import config, home
from station.control import connect, request
from station.capture.synthetic import render_page
from station.operators import Operators

QUIRE_STATION = Path(sys.executable).parent / "quire-station"
OPERATOR, PIN = "基准", "246810"


class Browser:
    """A signed-in kiosk client: the event stream on one connection, thumbnails on another."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request("GET", "/login")
        response = conn.getresponse()
        body = response.read().decode()
        login_cookie = response.getheader("set-cookie").split(";")[0]
        token = re.search(r'name="login_token" value="([^"]*)"', body).group(1)
        conn.request("POST", "/login", urlencode({"login_token": token, "name": OPERATOR, "pin": PIN}),
                     {"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie})
        response = conn.getresponse()
        response.read()
        if response.status != 303:
            raise SystemExit(f"signing in to the kiosk failed: HTTP {response.status}")
        self.cookie = next(c.split(";")[0] for c in response.headers.get_all("set-cookie")
                           if c.startswith("quire_kiosk="))
        conn.close()
        self.thumbnails = 0
        self.stream: http.client.HTTPConnection | None = None
        self.thread: threading.Thread | None = None

    def open(self) -> None:
        """Open the event stream and fetch each page's thumbnail as its event arrives."""
        self.stream = http.client.HTTPConnection(self.host, self.port, timeout=600)
        self.stream.request("GET", "/events", headers={"Cookie": self.cookie, "Accept": "text/event-stream"})
        response = self.stream.getresponse()
        if response.status != 200:
            raise SystemExit(f"the kiosk's event stream answered HTTP {response.status}")
        self.thread = threading.Thread(target=self._follow, args=(response,), name="bench-kiosk-browser")
        self.thread.start()

    def _follow(self, response) -> None:
        images = http.client.HTTPConnection(self.host, self.port, timeout=60)
        kind = None
        try:
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif kind == "page" and (src := re.search(r'<img src="([^"]+)"', line)):
                    images.request("GET", html.unescape(src.group(1)), headers={"Cookie": self.cookie})
                    reply = images.getresponse()
                    if reply.status == 200 and reply.read():
                        self.thumbnails += 1
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the stream was closed by close()
        finally:
            images.close()

    def close(self) -> None:
        """Hang up the event stream (as a closed tab does); its reader thread ends on the closed socket."""
        if self.stream is not None:
            self.stream.sock.shutdown(socket.SHUT_RDWR)
            self.thread.join()
            self.stream.close()
            self.stream = self.thread = None


def prepare(root: Path, pages: int, dpi: int) -> Path:
    """A station home whose source is a folder of ``pages`` rendered pages; one operator; station.toml."""
    feed = root / "feed"
    feed.mkdir()
    for i in range(pages):
        page = render_page(seed=11, index=i, dpi=dpi)
        Image.fromarray(page.image).save(feed / f"p{i + 1:03d}.tif", dpi=(dpi, dpi))   # uncompressed
    station_home = root / "station"
    home.init(config.load(station_home), "st-bench-kiosk").close()
    (station_home / "station.toml").write_text(f'source = "folder:{feed}"\ndpi = {dpi}\nkiosk_port = 0\n'
                                               'zeroconf_interfaces = ["127.0.0.1"]\nsync_interval_s = 3600\n')
    operators = Operators(station_home)
    operators.add(OPERATOR, PIN)
    operators.close()
    return station_home


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scan_once(station_home: Path, n: int) -> float:
    """Scan the folder as material 1-N of dossier K-1 through the daemon's control socket (the request
    'quire-station scan' makes, without a process to start); the seconds until it is sealed."""
    sock = connect(station_home / "control.sock")
    started = time.perf_counter()
    request(sock, {"op": "scan", "operator": OPERATOR, "dossier": {"archive_no": "K-1"},
                   "material": {"item": f"1-{n}", "title": "基准材料"}})
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=24, help="pages per run (default 24)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of one run each way (default 5)")
    ap.add_argument("--dpi", type=int, default=300, help="scan resolution of the pages (default 300)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kiosk-") as tmp:
        root = Path(tmp)
        print(f"rendering {args.pages} pages at {args.dpi} dpi …", flush=True)
        station_home = prepare(root, args.pages, args.dpi)
        log = open(root / "daemon.log", "w")
        daemon = subprocess.Popen([str(QUIRE_STATION), "--home", str(station_home), "daemon"], stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not (found := re.search(r"kiosk on (http://\S+/)", (root / "daemon.log").read_text())):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start its kiosk:\n" + (root / "daemon.log").read_text())
                time.sleep(0.1)
            browser = Browser(found.group(1))
            scan_once(station_home, 99)      # warm up: the first run pays for imports and the page cache
            figures: dict[str, list[float]] = {"none": [], "kiosk": []}
            cpu: dict[str, list[float]] = {"none": [], "kiosk": []}
            n = 0
            print(f"{'round':>5} {'who':<6} {'seconds':>8} {'pages/min':>10} {'CPU s/page':>10} {'thumbnails':>10}")
            for r in range(1, args.rounds + 1):
                for who in (("none", "kiosk") if r % 2 else ("kiosk", "none")):
                    n += 1
                    before = browser.thumbnails
                    if who == "kiosk":
                        browser.open()
                    used = cpu_s(daemon.pid)
                    seconds = scan_once(station_home, n)
                    if who == "kiosk":
                        time.sleep(0.5)      # the last thumbnails, fetched after the batch sealed
                        browser.close()
                    per_page = (cpu_s(daemon.pid) - used) / args.pages
                    ppm = args.pages / seconds * 60
                    figures[who].append(ppm)
                    cpu[who].append(per_page)
                    shown = browser.thumbnails - before if who == "kiosk" else "-"
                    print(f"{r:>5} {who:<6} {seconds:>8.2f} {ppm:>10.1f} {per_page:>10.3f} {shown:>10}", flush=True)
        finally:
            daemon.terminate()
            daemon.wait(60)
            log.close()
    none, kiosk = statistics.median(figures["none"]), statistics.median(figures["kiosk"])
    paired = statistics.median(k / n for k, n in zip(figures["kiosk"], figures["none"]))
    cpu_none, cpu_kiosk = statistics.median(cpu["none"]), statistics.median(cpu["kiosk"])
    print(f"\nmedian pages/min: none {none:.1f}, kiosk streaming thumbnails {kiosk:.1f}; "
          f"kiosk ÷ none = {kiosk / none:.3f} (cost {100 * (1 - kiosk / none):+.1f} %; goal ≤ 5 %)")
    print(f"median of each round's kiosk ÷ none: {paired:.3f} (cost {100 * (1 - paired):+.1f} %)")
    print(f"median station CPU per page: none {cpu_none:.3f} s, kiosk {cpu_kiosk:.3f} s; kiosk ÷ none = "
          f"{cpu_kiosk / cpu_none:.3f} (the kiosk's cost {100 * (cpu_kiosk / cpu_none - 1):+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
