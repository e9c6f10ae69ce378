"""The web console's fixtures: a real archive with real synced bundles (built once per module), the
console on 127.0.0.1 port 0 per test, and Debian's chromium driven by Playwright."""

import io
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from central import audit, config, profile, users, web
from central.archive import open_archive, open_blobs
from central.server import build_server
from station.scan import scan
from station.sync import sync
from central.web import imaging
from tests.conftest import TEST_PROFILE, make_station, register, use_blob_kind, write_atomically, write_test_profile

SCREENS = Path(__file__).parent / ".screens"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu", "--headless"]
# Who works with the archive in these tests: (id, name, roles, units, own dossier).
PEOPLE = [
    ("admin", "王管理", ["admin"], ["*"], None),
    ("admin2", "赵管理", ["admin"], ["*"], None),
    ("sec-a", "周保密", ["security_officer"], ["unit-a"], None),
    ("li", "李四", ["reader"], ["unit-a"], "D-2"),
    ("wang", "王五", ["reader"], ["unit-a"], None),
    ("arch1", "陈档案", ["archivist"], ["unit-a"], None),
    ("arch2", "刘档案", ["archivist"], ["unit-a"], None),
    ("insp", "孙质检", ["inspector"], ["unit-a"], None),
    ("auditor", "钱审计", ["auditor"], ["*"], None),
]
# Dossiers of unit-a: D-1 anyone's to ask for, D-2 li's own, D-3 li's sister's (回避).
DOSSIERS = [
    ({"archive_no": "D-1", "name": "张三"}, [("1-1", "干部履历表", 1), ("4-1-2", "学位证书", 1)]),
    ({"archive_no": "D-2", "name": "李四"}, [("1-1", "干部履历表", 1)]),
    ({"archive_no": "D-3", "name": "李五"}, [("1-1", "干部履历表", 1)]),
]


def password(user_id: str) -> str:
    return f"口令-{user_id}-2026!"


@pytest.fixture(scope="module", params=["disk", "scaled"])
def site(tmp_path_factory, request):
    """A real archive (gRPC server on loopback) whose station scanned and synced DOSSIERS, and PEOPLE with
    passwords they chose themselves; yields the archive."""
    root = tmp_path_factory.mktemp("web")
    home = root / "central"
    write_test_profile(home)
    use_blob_kind(home, request.param, request)
    archive = open_archive(config.load(home))
    profile.set_default(archive, TEST_PROFILE)
    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    # 150 dpi, the profile's minimum: the console shows the pages; their size is not what it is tested for.
    station = register(archive, f"127.0.0.1:{port}", make_station(root / "station", f"127.0.0.1:{port}", dpi=150))
    seed = 0
    for dossier, materials in DOSSIERS:
        for item, title, sheets in materials:
            seed += 1
            scan(station, dossier, {"item": item, "title": title}, f"synthetic:seed={seed},sheets={sheets}")
    assert not sync(station).rejected
    for user_id, name, roles, units, own in PEOPLE:
        users.add(archive, user_id, name, roles, units, own)
        users.set_password(archive, user_id, password(user_id), by="local:tests", must_change=False)
    users.relate(archive, "li", "D-3", "sibling")
    archive.test_station, archive.test_address = station, f"127.0.0.1:{port}"
    pool = getattr(archive.catalogue, "pool", None)
    if pool is not None:
        # PostgreSQL: the pool opens now every connection it may grow to, so the connections this
        # module's archive keeps are not counted as sockets a test left open.
        pool.resize(pool.max_size, pool.max_size)
        pool.wait()
    yield archive
    station.close()
    server.stop(grace=None).wait()
    archive.close()


@pytest.fixture(autouse=True)
def idle_s3_connections_closed(request):
    """After each test, the module's archive drops its idle connections to the object store (its client opens
    more as a test's requests overlap, and keeps them for the next): it gets a fresh store for the same bucket
    and the old one is closed with its connections, so no_leaks counts only sockets a test left in use."""
    yield
    if "site" in request.fixturenames:
        archive = request.getfixturevalue("site")
        if archive.config.blobs.startswith("s3://"):
            old, archive.blobs = archive.blobs, open_blobs(archive.config)
            old.close()
            archive.blobs.client._endpoint.http_session.close()   # the new one's bucket check, by boto3


@pytest.fixture
def console(site):
    """The console over the module's archive on 127.0.0.1, port 0 (plain HTTP on loopback); yields its URL."""
    running = web.start(site, "127.0.0.1:0", http=True)
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def contexts(browser):
    """New browser contexts (each its own cookies: one person each), closed after the test."""
    opened = []

    def new():
        context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1280, "height": 900})
        opened.append(context)
        return context.new_page()

    yield new
    for context in opened:
        context.close()


def sign_in(page, url: str, user_id: str, secret: str | None = None):
    """Sign in through the form, as a person would; returns the page."""
    page.goto(url + "login")
    page.fill("input[name=user]", user_id)
    page.fill("input[name=password]", secret or password(user_id))
    # The form's answer (the page signed in to, or the form again with its error) has loaded before the test
    # reads it: on a loaded machine the address changes well before the page's rows are there.
    with page.expect_navigation(wait_until="load"):
        page.click("button.primary")
    return page


def screenshot(page, name: str) -> Path:
    SCREENS.mkdir(exist_ok=True)
    write_atomically(SCREENS / ".gitignore", b"*\n")   # several xdist workers take screenshots at once
    path = SCREENS / f"{name}.png"
    # Bytes, written here: given a path, Playwright writes it on its event loop's executor threads,
    # which would outlive the test.
    write_atomically(path, page.screenshot(full_page=True))
    return path


class Client:
    """A client from the outside (urllib): its own cookies, no redirects followed, every response kept."""

    def __init__(self, url: str, forwarded_for: str | None = None):
        self.url, self.jar = url, CookieJar()
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kw):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, form: dict | None = None, headers: dict | None = None):
        """(status, headers, body bytes) of a GET, or of a POST when ``form`` is given."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers={**self.headers, **(headers or {})})
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read()

    def sign_in(self, user_id: str, secret: str | None = None):
        status, _, body = self.request("login")
        token = re.search(rb'name="login_token" value="([^"]*)"', body).group(1).decode()
        return self.request("login", {"login_token": token, "next": "/", "user": user_id,
                                      "password": secret or password(user_id)})

    def csrf(self, path: str = "/") -> str:
        status, _, body = self.request(path)
        return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()


def entries(archive, event: str, **match) -> list[dict]:
    """The audit log's entries of ``event`` whose fields equal ``match``."""
    return [e for e in audit.entries(archive) if e["event"] == event and all(e.get(k) == v for k, v in match.items())]


def assert_watermarked(body: bytes, blob, size: int, what: str) -> None:
    """``body`` is the stored page ``blob`` (open for reading) rendered at ``size`` with a watermark burned into its pixels:
    > 1 % of them differ from the unwatermarked render, and red text runs along its foot."""
    served = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.int16)
    plain = np.asarray(Image.open(io.BytesIO(imaging.screen_jpeg(blob, None, size))).convert("RGB"), dtype=np.int16)
    assert served.shape == plain.shape and max(served.shape[:2]) == size, what
    changed = np.abs(served - plain).max(axis=2) > 40
    assert changed.mean() > 0.01, f"{what}: watermark not found in the pixels"
    foot = served[-max(8, size // 60):]
    red = (foot[..., 0] > 150) & (foot[..., 1] < 110) & (foot[..., 2] < 110)
    assert red.any(), f"{what}: no red watermark text in the band at the foot"
