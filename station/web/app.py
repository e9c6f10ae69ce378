"""The kiosk as an ASGI application: sign-in, the live screen and its event stream, Scan and queueing.

Security as the archive's console does it: a strict CSP (no inline script), a CSRF token on every state
change, SameSite=Strict HttpOnly cookies, nothing cached but static files.
"""

import asyncio
import functools
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ScannerError, StationError
from .. import directory
from ..jobs import WHOLE_DOSSIER
from ..operators import Operators
from . import view
from .events import Hub
from .sessions import COOKIE, LOGIN_COOKIE, Sessions

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
# The vendored htmx is the archive console's file, served from where it lies (one copy to update); so is the
# pages' <head> (central/_document.html), which the kiosk's base extends.
CENTRAL_WEB = Path(find_spec("central").submodule_search_locations[0]) / "web"
VENDOR = CENTRAL_WEB / "static" / "vendor"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"
STATE_EVERY_S = 0.5     # the live panel is sent at most this often while events arrive
TICK_S = 5.0            # and looked at this often when none do (the archive's state, the session's life)


class SecurityHeaders:
    """Every response: a strict CSP, no sniffing, no referrer, no framing; no caching but of static files."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                            (b"cross-origin-opener-policy", b"same-origin"),
                            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                            (b"cache-control", b"private, max-age=3600" if static else b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, with_headers)


@dataclass
class Kiosk:
    """The kiosk's state: the daemon it shows and drives, its reads, sessions, events and templates."""

    daemon: object
    reader: view.Reader
    hub: Hub
    operators: Operators
    sessions: Sessions = field(default_factory=Sessions)
    templates: Environment = field(default_factory=lambda: Environment(
        loader=ChoiceLoader([FileSystemLoader(HERE / "templates"),
                             PrefixLoader({"central": FileSystemLoader(CENTRAL_WEB / "templates")})]),
        autoescape=select_autoescape(default=True)))
    scans: list = field(default_factory=list)   # threads waiting on a Scan request

    async def read(self, fn, *args):
        """Run a read on the kiosk's reader thread (its store and operator connections live there)."""
        return await asyncio.get_running_loop().run_in_executor(self.reader.pool, functools.partial(fn, *args))

    def render(self, template: str, **context) -> str:
        return self.templates.get_template(template).render(csrf_field=CSRF_FIELD, **context)

    def page(self, template: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(self.render(template, **context), status_code=status)

    def enabled(self, name: str) -> bool:
        return self.operators.enabled(name)


def kiosk(request: Request) -> Kiosk:
    return request.app.state.kiosk


def signed_in(handler):
    """An endpoint for a signed-in operator: no session → the sign-in page; a POST needs the session's CSRF token."""
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        k = kiosk(request)
        token = request.cookies.get(COOKIE)
        session = await k.read(k.sessions.resume, token, k.enabled)
        if session is None:
            if request.url.path == "/events":
                return Response("signed out", status_code=401)
            return RedirectResponse("/login", status_code=303)
        form = None
        if request.method == "POST":
            form = await request.form()
            given = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                log.warning("kiosk: %s refused for %s: CSRF token missing or wrong", request.url.path, session.operator)
                return k.page("refused.html", 403, session=session, title="请求被拒绝",
                              reason="该表单已失效或并非由本工作站页面提交（CSRF 校验未通过）。请刷新页面后重试。")
        return await handler(request, k, session, form)
    return endpoint


async def login_form(request: Request) -> Response:
    k = kiosk(request)
    if await k.read(k.sessions.resume, request.cookies.get(COOKIE), k.enabled, False):
        return RedirectResponse("/", status_code=303)
    return _login_page(k, "")


def _login_page(k: Kiosk, message: str, status: int = 200, name: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = k.page("login.html", status, login_token=token, message=message, name=name)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return response


async def login(request: Request) -> Response:
    k = kiosk(request)
    form = await request.form()
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not hmac.compare_digest(str(form.get("login_token") or "").encode(), expected.encode()):
        return _login_page(k, "登录表单已失效，请重新输入姓名和 PIN。", 403)
    name, pin = str(form.get("name") or ""), str(form.get("pin") or "")
    outcome = await k.read(k.operators.sign_in, name, pin)
    if outcome.name is None:
        log.warning("kiosk: sign-in refused for %r%s", name.strip()[:32], " (locked)" if outcome.locked else "")
        return _login_page(k, outcome.message, 429 if outcome.locked else 401, name.strip()[:32])
    log.info("kiosk: %s signed in", outcome.name)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, k.sessions.begin(outcome.name), httponly=True, samesite="strict", path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@signed_in
async def logout(request: Request, k: Kiosk, session, form) -> Response:
    k.sessions.end(request.cookies.get(COOKIE))
    log.info("kiosk: %s signed out", session.operator)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _chosen(request: Request) -> tuple[str, str] | None:
    """The material the operator chose to look at (a batch waiting for review), from ?d=…&i=…"""
    d, i = request.query_params.get("d", ""), request.query_params.get("i", "")
    return (d, i) if d and i else None


def _in_review(live: dict) -> dict | None:
    return live["batch"] if live["batch"] and live["batch"]["in_review"] else None


@signed_in
async def home(request: Request, k: Kiosk, session, form) -> Response:
    chosen = _chosen(request)
    live = await k.read(view.live, k.daemon, k.reader, chosen)
    batch, pages = await k.read(view.pages, k.reader, k.daemon, chosen)
    groups = await k.read(view.dossier_groups, k.reader, k.daemon, chosen)
    events_url = "/events" + (f"?{urlencode({'d': chosen[0], 'i': chosen[1]})}" if chosen else "")
    return k.page("kiosk.html", session=session, live=live, pages=pages, review=_in_review(live),
                  events_url=events_url, groups=groups, feed=_feed_key(k.daemon))


def _feed_key(daemon) -> str | None:
    """What the page grid holds on a dossier feed's screen (the "batch" event's data for that feed)."""
    run = daemon.dossier_run
    return f"{run['archive_no']}\t{WHOLE_DOSSIER['item']}" if run else None


@signed_in
async def page_image(request: Request, k: Kiosk, session, form) -> Response:
    q = request.query_params
    try:
        n, width = int(q.get("n", "")), int(q.get("w", view.THUMB_WIDTHS[0]))
    except ValueError:
        return Response("n and w are whole numbers", status_code=400)
    if width not in view.THUMB_WIDTHS:
        return Response(f"w is one of {view.THUMB_WIDTHS}", status_code=400)
    data = await k.read(k.reader.thumbnail, q.get("d", ""), q.get("i", ""), n, width)
    if data is None:
        return Response("no such page", status_code=404)
    return Response(data, media_type="image/jpeg")


@signed_in
async def sheet_image(request: Request, k: Kiosk, session, form) -> Response:
    """A cover sheet's image (evidence, not a page), by its hash, as a thumbnail."""
    data = await k.read(k.reader.sheet_thumbnail, request.query_params.get("h", ""), view.THUMB_WIDTHS[0])
    if data is None:
        return Response("no such cover sheet", status_code=404)
    return Response(data, media_type="image/jpeg")


def _answer(request: Request, k: Kiosk, message: str, ok: bool, status: int = 200) -> Response:
    """A form's outcome: the notice alone for htmx, else back to the screen (or the refusal as a page)."""
    if request.headers.get("hx-request"):
        return HTMLResponse(k.render("_notice.html", message=message, ok=ok), status_code=200)
    if ok:
        return RedirectResponse("/", status_code=303)
    return k.page("refused.html", status, title="无法完成", reason=message)


@signed_in
async def scan(request: Request, k: Kiosk, session, form) -> Response:
    wanted = str(form.get("job") or "")
    jobs = k.daemon.jobs.jobs()
    job = next((j for j in jobs if j["id"] == wanted), None) if wanted else (jobs[0] if jobs else None)
    if job is None:
        return _answer(request, k, "没有待扫描的材料：请先在“登记材料”中登记。" if not wanted
                       else "该材料已不在待扫描队列中（可能已扫描完成），请刷新页面。", False, 409)
    message = {"op": "scan", "operator_signed_in": session.operator, "dossier": job["dossier"],
               "material": job["material"], "by_cover_sheets": bool(job.get("by_cover_sheets"))}
    busy = k.daemon.current is not None
    thread = threading.Thread(target=_run_scan, args=(k, message), name="quire-kiosk-scan", daemon=True)
    k.scans[:] = [t for t in k.scans if t.is_alive()] + [thread]
    thread.start()
    what = f"{job['dossier']['archive_no']} {job['material']['item']}《{job['material']['title']}》"
    return _answer(request, k, f"已排队：{what}，当前批次完成后开始。" if busy else f"开始扫描 {what}。", True)


def _run_scan(k: Kiosk, message: dict) -> None:
    """Down the daemon's request path, as 'quire-station scan' goes; the screen follows by events."""
    try:
        k.daemon.handle(message)
    except ScannerError:
        pass    # the scanner panel says what stopped it and what to do
    except StationError as exc:
        if getattr(exc, "kind", None) is not None:
            return      # a cover sheet refused: the daemon told the screen, worded with what to do
        k.hub.publish({"event": "refused", "message": f"未能扫描：{exc}"})


@signed_in
async def queue_add(request: Request, k: Kiosk, session, form) -> Response:
    get = lambda key: str(form.get(key) or "").strip()  # noqa: E731
    dossier = {"archive_no": get("dossier")}
    if get("name"):
        dossier["name"] = get("name")
    if get("by_cover_sheets"):      # the whole dossier as one feed, split at its cover sheets
        try:
            reply = await asyncio.to_thread(k.daemon.handle, {"op": "queue_add", "dossier": dossier,
                                                              "by_cover_sheets": True, "operator": session.operator})
        except StationError as exc:
            return _answer(request, k, f"未能登记：{exc}", False, 400)
        return _answer(request, k, f"已登记整卷 {dossier['archive_no']}（按分隔页拆分），排在第 {reply['position']} 位。",
                       True)
    material = {"item": get("item"), "title": get("title")}
    if get("date_formed"):
        material["date_formed"] = get("date_formed")
    if not material["title"]:
        return _answer(request, k, "请填写材料名称。", False, 400)
    try:
        if get("pages"):    # the paper directory's 页数, typed in: sealing checks the count against it
            await k.read(functools.partial(directory.put_entry, zh=True), k.reader.station, dossier["archive_no"],
                         material["item"], material["title"], get("pages"), material.get("date_formed"))
        reply = await asyncio.to_thread(k.daemon.handle, {"op": "queue_add", "dossier": dossier, "material": material,
                                 "operator": session.operator})
    except StationError as exc:
        return _answer(request, k, f"未能登记：{exc}", False, 400)
    return _answer(request, k, f"已登记 {dossier['archive_no']} {material['item']}《{material['title']}》，"
                               f"排在第 {reply['position']} 位。", True)


# -- the dossier's directory (目录), typed on the kiosk ------------------------------------

DIRECTORY_FIELDS = (("item", "类号", "4-1-2"), ("title", "材料名称", "干部履历表"), ("date_formed", "形成时间", "19950312"),
                    ("pages", "页数", "12"), ("remarks", "备注", ""))
STATE_WORDS = {None: "未扫描", "open": "正在扫描", "interrupted": "扫描中断", "review": "待复核", "sealed": "已封装"}


def _directory_rows(station, archive_no: str) -> list[dict]:
    try:
        return directory.show(station, archive_no)
    except StationError:
        return []       # no directory yet: the operator types its first row


async def _directory(request: Request, k: Kiosk, session, archive_no: str, *, notice: str = "", ok: bool = True,
                     status: int = 200, typed: dict | None = None) -> Response:
    """The directory section: every row as stored, but the row refused (``typed``: its key, values and bad cells)
    as the operator typed it, each bad cell marked with what to write."""
    rows = await k.read(_directory_rows, k.reader.station, archive_no) if archive_no else []
    shown = []
    for n, row in enumerate(rows, 1):
        values = {name: "" if row.get(name) is None else str(row[name]) for name, _, _ in DIRECTORY_FIELDS}
        errors = {}
        if typed and typed["key"] == row["item"]:
            values, errors = typed["values"] or values, typed["errors"]
        scanned = "" if row["state"] is None else f"（{row['scanned']} 页）"
        shown.append({"n": n, "key": row["item"], "values": values, "errors": errors,
                      "state": STATE_WORDS.get(row["state"], row["state"]) + scanned, "locked": row["state"] is not None})
    new = {"values": {}, "errors": {}}
    if typed and typed["key"] == "":
        new = {"values": typed["values"], "errors": typed["errors"]}
    html = k.render("_directory.html", session=session, d=archive_no, rows=shown, new=new, fields=DIRECTORY_FIELDS,
                    notice=notice, ok=ok)
    if request.headers.get("hx-request"):
        return HTMLResponse(html)
    return k.page("directory.html", status, session=session, d=archive_no, table=html)


@signed_in
async def directory_page(request: Request, k: Kiosk, session, form) -> Response:
    return await _directory(request, k, session, request.query_params.get("d", "").strip())


@signed_in
async def directory_change(request: Request, k: Kiosk, session, form) -> Response:
    """Add, correct or remove one row of the dossier's directory, checked by the rules a directory file meets."""
    get = lambda key: str(form.get(key) or "").strip()  # noqa: E731
    action, d, was = get("action"), get("d"), get("was")
    if not d:
        return await _directory(request, k, session, d, notice="请先填写档号，再编辑目录。", ok=False, status=400)
    values = {name: get(name) for name, _, _ in DIRECTORY_FIELDS}
    where = f"第 {get('n')} 行" if was else "新增行"
    try:
        if action == "remove":
            await k.read(functools.partial(directory.remove_entry, zh=True), k.reader.station, d, was)
            log.info("kiosk: %s removed %s %s from the directory", session.operator, d, was)
            return await _directory(request, k, session, d, notice=f"已从目录删除 {was}。")
        await k.read(functools.partial(directory.put_entry, replacing=was or None, new=not was, zh=True),
                     k.reader.station, d, values["item"], values["title"], values["pages"],
                     values["date_formed"] or None, values["remarks"] or None)
    except directory.EntryRefused as exc:
        if action == "remove":      # the row as stored, with why it stays
            errors = {"row": words for _, words in exc.cells}
            typed = {"key": was, "values": None, "errors": errors}
        else:
            errors = {field: f"{where}「{directory.NAMES[field]}」：{words}" for field, words in exc.cells}
            typed = {"key": was, "values": values, "errors": errors}
        notice = ("；".join(errors.values()) if action == "remove" else
                  f"{where}未保存：{len(errors)} 个格子需要改正（已标红，说明在该行下方）。")
        return await _directory(request, k, session, d, notice=notice, ok=False, status=400, typed=typed)
    log.info("kiosk: %s kept %s %s in the directory", session.operator, d, values["item"])
    return await _directory(request, k, session, d, notice=f"已保存 {values['item']}《{values['title']}》，"
                                                           f"{values['pages']} 页。")


DEFAULT_REASONS = {"rescan": "复核时重扫", "insert": "补插漏扫的页"}
REVIEWED = {"rescan": "已重扫第 {n} 页。", "remove": "已移除第 {n} 页（{reason}）。", "seal": "已封装 {d} {i}。"}


@signed_in
async def review_action(request: Request, k: Kiosk, session, form) -> Response:
    """A pre-seal review action, down the daemon's request path (a rescan uses the scanner it holds)."""
    get = lambda key: str(form.get(key) or "").strip()  # noqa: E731
    action, d, i = get("action"), get("d"), get("i")
    asked = {"op": "review", "action": action, "archive_no": d, "item": i, "operator_signed_in": session.operator,
             "reason": get("reason") or DEFAULT_REASONS.get(action, "")}
    for key in ("n", "after"):
        if get(key):
            if not get(key).isdigit():
                return _answer(request, k, f"{key} 须为页号（整数）。", False, 400)
            asked[key] = int(get(key))
    if action == "seal" and get("confirm_reason"):
        asked["confirm_reason"] = get("confirm_reason")
    try:
        await asyncio.to_thread(k.daemon.handle, asked)
    except StationError as exc:
        return _answer(request, k, f"未能完成：{exc}", False, 400)
    if action == "insert":
        done = "已在最前补插一页。" if asked.get("after") == 0 else f"已在第 {asked.get('after')} 页后补插一页。"
    else:
        done = REVIEWED.get(action, "已完成。").format(n=asked.get("n"), reason=asked["reason"], d=d, i=i)
    return _answer(request, k, done, True)


@signed_in
async def events(request: Request, k: Kiosk, session, form) -> Response:
    token = request.cookies.get(COOKIE)
    chosen = _chosen(request)
    stream = k.hub.subscribe()

    async def show(event):
        """What the screen is sent for one of the daemon's events (nothing for most of them)."""
        kind = event["event"]
        if kind == "page":
            job = event["job"]
            item = job["material"]["item"]
            page = view.page_view(job["dossier"]["archive_no"], item, event["n"], event["record"], job["id"],
                                  group=item if job.get("by_cover_sheets") else None)
            yield _sse("page", k.render("_page.html", page=page))
        elif kind in ("material", "material_done") and not chosen:
            # A dossier feed: a cover sheet read (a new group, its sheet the separator), or a material
            # sealed or kept for review (its group again, with its count and state).
            job = event["job"]
            g = await k.read(view.group, k.reader, job["dossier"]["archive_no"], job["material"])
            yield _sse("material", k.render("_material.html", g=g))
        elif kind in ("reviewed", "review", "idle"):
            # Pages renumbered, replaced or removed, or a batch now waiting for review (kept open, or its
            # count differing from the directory): the whole grid, with the review's buttons.
            live = await k.read(view.live, k.daemon, k.reader, chosen)
            if kind != "idle" or _in_review(live):
                _, pages = await k.read(view.pages, k.reader, k.daemon, chosen)
                groups = await k.read(view.dossier_groups, k.reader, k.daemon, chosen)
                yield _sse("pages", k.render("_pages.html", pages=pages, review=_in_review(live),
                                             session=session, groups=groups))
        elif kind == "batch":
            job = event["job"]
            yield _sse("batch", f"{job['dossier']['archive_no']}\t{job['material']['item']}")
        elif kind == "refused":
            yield _sse("notice", view.refused(event))

    async def body():
        sent, dirty, rendered_at = None, False, 0.0
        try:
            while True:
                try:
                    event = await asyncio.wait_for(stream.get(), STATE_EVERY_S if dirty else TICK_S)
                except asyncio.TimeoutError:
                    event = {"event": "tick"}
                if event is None:
                    return
                kind = event["event"]
                if kind == "tick" and await k.read(k.sessions.resume, token, k.enabled, False) is None:
                    yield _sse("bye", "")
                    return
                async for out in show(event):
                    yield out
                dirty = dirty or kind != "tick"
                # A batch starting is shown at once, before its first page: the throttle is for page-by-page churn.
                if kind in ("tick", "batch") or (dirty and time.monotonic() - rendered_at >= STATE_EVERY_S):
                    live = await k.read(view.live, k.daemon, k.reader, chosen)
                    # The daemon tells of a page before it seals the batch, but the state just read may already
                    # be newer than events still queued: send those first, so the screen never shows a batch
                    # sealed before its last page has arrived.
                    late = False
                    while not stream.empty():
                        queued = stream.get_nowait()
                        if queued is None:
                            return
                        late = True
                        async for out in show(queued):
                            yield out
                    html = k.render("_live.html", live=live, session=session)
                    dirty, rendered_at = late, time.monotonic()
                    if html != sent:
                        sent = html
                        yield _sse("state", html)
        finally:
            k.hub.unsubscribe(stream)

    return StreamingResponse(body(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})


def _sse(kind: str, data: str) -> str:
    return f"event: {kind}\n" + "".join(f"data: {line}\n" for line in (data.splitlines() or [""])) + "\n"


def create_app(k: Kiosk) -> Starlette:
    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", home, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/page", page_image, methods=["GET"]),
        Route("/sheet", sheet_image, methods=["GET"]),
        Route("/scan", scan, methods=["POST"]),
        Route("/queue", queue_add, methods=["POST"]),
        Route("/review", review_action, methods=["POST"]),
        Route("/directory", directory_page, methods=["GET"]),
        Route("/directory", directory_change, methods=["POST"]),
        Mount("/static/vendor", StaticFiles(directory=VENDOR, check_dir=False), name="vendor"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.kiosk = k
    app.add_middleware(SecurityHeaders)
    return app
