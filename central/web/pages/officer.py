"""The security officer: the queue of requests with the 回避 check, decisions with reasons, active grants."""

from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ... import access, users
from ..base import call, console, page, render


def _queue(archive, actor) -> dict:
    rows = access.listing(archive, actor)
    names = {u["id"]: u["name"] for u in users.listing(archive)}
    now = datetime.now(timezone.utc).isoformat()
    for c in rows:
        c["reader_name"] = names.get(c["reader"], "")
        c["active"] = c["state"] == "approved" and (c["expires_at"] or "") > now
        if c["state"] == "requested" or c["export_state"] == "requested":
            c["avoidance"] = access.avoidance(archive, actor, c)
    return {"waiting": [c for c in rows if c["state"] == "requested" or (c["active"] and c["export_state"] == "requested")],
            "active": [c for c in rows if c["active"]],
            "decided": [c for c in reversed(rows) if c["state"] != "requested" and not c["active"]][:50]}


@page
async def queue(request: Request, visit, form):
    lists = await call(request, _queue, console(request).archive, visit.actor)
    return render(request, "officer.html", visit, **lists)


@page
async def decide(request: Request, visit, form):
    what = "export" if form.get("what") == "export" else "view"
    await call(request, access.decide, console(request).archive, visit.actor, request.path_params["cid"],
               form.get("approve") == "1", str(form.get("reason", "")).strip(), what)
    return RedirectResponse("/officer", status_code=303)


@page
async def end(request: Request, visit, form):
    await call(request, access.end_grant, console(request).archive, visit.actor, request.path_params["cid"],
               str(form.get("reason", "")))
    return RedirectResponse("/officer", status_code=303)


ROUTES = [
    Route("/officer", queue, methods=["GET"]),
    Route("/officer/{cid:int}/decide", decide, methods=["POST"]),
    Route("/officer/{cid:int}/end", end, methods=["POST"]),
]
