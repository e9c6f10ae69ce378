"""The auditor: the audit log with filters, the latest signed checkpoint, a verify run, who viewed what."""

from starlette.requests import Request
from starlette.routing import Route

from ... import audit
from ...access import guard
from ..base import call, console, page, render

SHOWN = 500   # entries a page lists, newest first


def _log(archive, actor, who: str, event: str, archive_no: str, day: str) -> dict:
    guard(archive, actor, "audit.read")
    every = audit.entries(archive)
    rows = [e for e in reversed(every) if (not who or who in e.get("by", ""))
            and (not event or e["event"].startswith(event)) and (not archive_no or e.get("archive_no") == archive_no)
            and (not day or e["at"].startswith(day))]
    cp = audit.latest_checkpoint(archive)
    return {"rows": rows[:SHOWN], "matched": len(rows), "total": len(every), "checkpoint": cp.body if cp else None}


def _verify(archive, actor) -> audit.LogReport:
    guard(archive, actor, "audit.read")
    return audit.verify_log(archive)


@page
async def log(request: Request, visit, form):
    q = {k: request.query_params.get(k, "").strip() for k in ("who", "event", "archive_no", "day")}
    if request.url.path == "/audit/views":
        q["event"] = q["event"] or "content."
    found = await call(request, _log, console(request).archive, visit.actor, *q.values())
    return render(request, "audit.html", visit, q=q, views=request.url.path == "/audit/views", **found)


@page
async def verify(request: Request, visit, form):
    report = await call(request, _verify, console(request).archive, visit.actor)
    found = await call(request, _log, console(request).archive, visit.actor, "", "", "", "")
    return render(request, "audit.html", visit, q={}, views=False, report=report, **found)


ROUTES = [
    Route("/audit", log, methods=["GET"]),
    Route("/audit/views", log, methods=["GET"]),
    Route("/audit/verify", verify, methods=["POST"]),
]
