"""What every page shares: the signed-in visit, CSRF, the worker pool, rendering and refusals."""

import asyncio
import functools
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from .. import refusals
from ..access import NotFound
from ..archive import Archive
from ..errors import CentralError, UnknownBundle
from ..permissions import ACTIONS, Actor, PermissionDenied
from . import fmt, sessions
from .sessions import Visit

TEMPLATES = Path(__file__).parent / "templates"
CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"


@dataclass
class Console:
    """The console's state: the archive, the threads the archive's synchronous code runs on, templates."""

    archive: Archive
    pool: ThreadPoolExecutor
    templates: Jinja2Templates
    secure: bool    # served over HTTPS: cookies are Secure


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters.update(fmt.FILTERS)
    templates.env.globals.update(categories=fmt.CATEGORIES, may=may)
    return templates


def may(visit: Visit | None, action: str) -> bool:
    """Whether the visitor holds a role ``action`` needs (which links to show; every use case still checks)."""
    return visit is not None and bool(visit.actor.roles & ACTIONS.get(action, set()))


def marks(actor: Actor, why: str) -> tuple[str, ...]:
    """A watermark's lines: who looks, under what (a consultation, catalogue work, QC), when (Beijing time)."""
    return (f"{actor.name}（账号 {actor.id}）", why, fmt.when(datetime.now(timezone.utc).isoformat()))


def console(request: Request) -> Console:
    return request.app.state.console


async def call(request: Request, fn, *args, **kw):
    """Run the archive's synchronous ``fn`` on the console's worker threads."""
    return await asyncio.get_running_loop().run_in_executor(console(request).pool, functools.partial(fn, *args, **kw))


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def render(request: Request, template: str, visit: Visit | None, status: int = 200, **context) -> Response:
    return console(request).templates.TemplateResponse(
        request, template, {"visit": visit, "csrf_field": CSRF_FIELD, **context}, status_code=status)


def refused_page(request: Request, visit: Visit | None, exc: Exception) -> Response:
    """A refusal or error as a page naming what was wrong (the archive's own words) and what to do."""
    if isinstance(exc, PermissionDenied):
        status, title = 403, "无权进行此操作"
    elif isinstance(exc, (NotFound, UnknownBundle)):
        status, title = 404, "未找到"
    else:
        status, title = 400, "无法完成"
    return render(request, "refused.html", visit, status, title=title, reason=str(exc),
                  logged=bool(getattr(exc, "audited", False)))


def page(handler):
    """An endpoint for signed-in people: no session → sign-in page; a state change needs the session's
    CSRF token; a forced password change comes first; refusals become pages."""
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        archive = console(request).archive
        visit = await call(request, sessions.resume, archive, request.cookies.get(sessions.COOKIE))
        if visit is None:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(back, safe='')}", status_code=303)
        if visit.must_change_password and request.url.path not in ("/password", "/logout"):
            return RedirectResponse("/password", status_code=303)
        form = None
        if request.method == "POST":
            form = await request.form()
            given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
            if not hmac.compare_digest(str(given).encode(), visit.csrf.encode()):
                await call(request, refusals.record, archive, "web.refused", f"user:{visit.actor.id}",
                           {"path": request.url.path, "reason": "CSRF token missing or wrong",
                            "address": address(request)}, visit.actor.label)
                return render(request, "refused.html", visit, 403, title="请求被拒绝", logged=True,
                              reason="该表单已失效或并非由本系统页面提交（CSRF 校验未通过）。请刷新页面后重试。")
        try:
            return await handler(request, visit, form)
        except CentralError as exc:
            return refused_page(request, visit, exc)
    return endpoint


def page_viewer(request: Request, visit: Visit, materials: list[dict], base: str, archive_no: str, item: str,
                n: int) -> Response:
    """A dossier's page ``n`` of material ``item`` in the viewer, with the previous and next pages of the
    whole dossier (``base``: the dossier's address; its images are ``base/item/n.jpg``)."""
    sequence = [(m["item"], k) for m in materials for k in range(1, m["page_count"] + 1)]
    if (item, n) not in sequence:
        raise NotFound(f"dossier {archive_no} has no page {n} in material {item}")
    i = sequence.index((item, n))

    def link(j: int) -> str | None:
        return f"{base}/{sequence[j][0]}/{sequence[j][1]}" if 0 <= j < len(sequence) else None

    title = next(m["title"] for m in materials if m["item"] == item)
    return render(request, "viewer.html", visit, base=base, item=item, n=n, title=title, position=i + 1,
                  total=len(sequence), prev=link(i - 1), next=link(i + 1), archive_no=archive_no)
