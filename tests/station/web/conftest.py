"""The kiosk's fixtures: a real `quire-station daemon` process (its kiosk on 127.0.0.1, port 0) over a
station enrolled with a real archive, operators added through the real CLI, and Debian's chromium
driven by Playwright as the archive console's tests drive it."""

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.conftest import make_station, register, write_atomically

QUIRE_STATION = Path(sys.executable).parent / "quire-station"
SCREENS = Path(__file__).parent / ".screens"
# Debian's chromium, launched as the archive console's browser tests launch it.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu", "--headless"]
OPERATOR, PIN = "张三", "246810"

def add_operator(home: Path, name: str, first: str, second: str | None = None, *extra: str):
    """`quire-station operator add NAME` as a technician types it: the PIN twice at the prompt."""
    # A session of its own: no controlling terminal, so getpass reads the PIN from stdin.
    return subprocess.run([str(QUIRE_STATION), "--home", str(home), "operator", "add", name, *extra],
                          input=f"{first}\n{second if second is not None else first}\n", capture_output=True,
                          text=True, timeout=120, start_new_session=True)

class KioskDaemon:
    """`quire-station daemon` as a child process; ``url`` is where it says its kiosk is."""

    def __init__(self, home: Path):
        self.home = home
        self.log_path = home.parent / "daemon.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(QUIRE_STATION), "--home", str(home), "daemon"], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (found := re.search(r"kiosk on (http://127\.0\.0\.1:\d+/)", self.output())):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.05)
        self.url = found.group(1)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

def station_home(root: Path, address: str | None, archive=None, **settings) -> Path:
    """An initialised station (enrolled with ``archive`` when given) whose station.toml holds ``settings``."""
    home = root / "st"
    station = make_station(home, address)
    if archive is not None:
        register(archive, address, station)
    station.close()
    settings = {"kiosk_port": 0, "zeroconf_interfaces": ["127.0.0.1"], **settings}
    if address:
        settings["central"] = address
    lines = []
    for key, value in settings.items():
        shown = f'"{value}"' if isinstance(value, str) else str(value).replace("'", '"')
        lines.append(f"{key} = {shown.lower() if isinstance(value, bool) else shown}")
    (home / "station.toml").write_text("\n".join(lines) + "\n")
    return home

@pytest.fixture
def kiosks():
    started = []
    yield lambda home: started.append(KioskDaemon(home)) or started[-1]
    for daemon in started:
        daemon.close()

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

@pytest.fixture
def tab(browser):
    """A fresh browser context (its own cookies) at a touchscreen's size; closed after the test."""
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1280, "height": 800},
                                  has_touch=True)
    yield context.new_page()
    context.close()

def sign_in_on(page, url: str, name: str = OPERATOR, pin: str = PIN) -> None:
    """Sign in on the kiosk's page in the browser, as an operator types it."""
    page.goto(url)
    page.fill("input[name=name]", name)
    page.fill("input[name=pin]", pin)
    page.click("button.primary")
    page.wait_for_selector("#operator")


def screenshot(page, name: str) -> Path:
    SCREENS.mkdir(exist_ok=True)
    write_atomically(SCREENS / ".gitignore", b"*\n")   # several xdist workers take screenshots at once
    path = SCREENS / f"{name}.png"
    write_atomically(path, page.screenshot(full_page=True))   # bytes written here: no Playwright executor threads left
    return path

class Client:
    """A client from outside (urllib): its own cookies, no redirects followed."""

    def __init__(self, url: str):
        self.url, self.jar = url, CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kw):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, form: dict | None = None, headers: dict | None = None):
        """(status, headers, body text) of a GET, or of a POST when ``form`` is given."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read().decode()

    def sign_in(self, name: str = OPERATOR, pin: str = PIN):
        _, _, body = self.request("login")
        token = re.search(r'name="login_token" value="([^"]*)"', body).group(1)
        return self.request("login", {"login_token": token, "name": name, "pin": pin})

    def csrf(self) -> str:
        _, _, body = self.request("/")
        return re.search(r'name="csrf" value="([^"]+)"', body).group(1)
