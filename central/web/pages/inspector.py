"""The inspector: QC acceptance (数据验收) — the sample shown large page by page, judged by keyboard, decided."""

import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ... import access, profile, qc, stations
from ...errors import UnknownBundle
from ...permissions import Actor
from ...store import bundles as store_bundles
from .. import imaging
from ..base import call, console, marks, page, render

WORK = "质检抽检·仅供验收"


def _batches(archive, actor: Actor) -> list[dict]:
    """Committed batches of ``actor``'s units, newest first (a listing is scoped, so nothing is logged)."""
    return list(reversed(qc.listing(archive, actor)))


def _batch(archive, actor: Actor, bundle: str) -> dict:
    """The batch under QC with its sample, verdicts, the profile's reasons and any rescan notice; or, not
    started yet, what starting it needs. Another unit's batch is refused and logged."""
    access.guard(archive, actor, "qc.inspect")
    try:
        batch = qc.status(archive, bundle)
    except UnknownBundle:
        batch = None
    row = next((b for b in qc.listing(archive, actor) if b["bundle_id"].startswith(bundle.lower())), None)
    if batch is None and row is None:
        raise UnknownBundle(f"no committed batch {bundle}; the QC page lists them")
    bundle_id = batch["bundle_id"] if batch else row["bundle_id"]
    manifest = json.loads(store_bundles.manifest(archive.catalogue, bundle_id))
    unit = stations.get(archive, batch["station_id"] if batch else row["station_id"])["unit"]
    access.guard(archive, actor, "qc.inspect", unit=unit, archive_no=manifest["dossier"]["archive_no"])
    if batch is None:
        return {"started": False, "row": row}
    notice = next((json.loads(n["body"]) | {"at": n["created_at"]} for n in qc.notices(archive, batch["station_id"])
                   if json.loads(n["body"])["bundle_id"] == batch["bundle_id"]), None)
    return {"started": True, "b": batch, "dossier": manifest["dossier"], "material": manifest["material"],
            "reasons": profile.for_unit(archive, unit).qc_rejection_reasons, "notice": notice,
            "unjudged": [n for n in batch["sample"] if n not in batch["judged"]]}


def _image(archive, actor: Actor, bundle: str, n: int) -> bytes:
    _, blob = qc.sample_page(archive, actor, bundle, n)
    with blob:
        return imaging.screen_jpeg(blob, marks(actor, WORK))


@page
async def batches(request: Request, visit, form):
    rows = await call(request, _batches, console(request).archive, visit.actor)
    return render(request, "qc.html", visit, rows=rows)


@page
async def batch(request: Request, visit, form):
    bundle = request.path_params["bundle"]
    found = await call(request, _batch, console(request).archive, visit.actor, bundle)
    if found["started"] and found["b"]["state"] == "sampling" and found["unjudged"] \
            and found["b"]["inspector"] == visit.actor.id and not request.query_params.get("summary"):
        return RedirectResponse(f"/qc/{found['b']['bundle_id']}/{found['unjudged'][0]}", status_code=303)
    return render(request, "qc_batch.html", visit, **found)


@page
async def start(request: Request, visit, form):
    b = await call(request, qc.start, console(request).archive, visit.actor, request.path_params["bundle"])
    return RedirectResponse(f"/qc/{b['bundle_id']}", status_code=303)


@page
async def sample(request: Request, visit, form):
    """One sampled page, large, with good/bad and the profile's reasons (keys: G, B then 1–9, ← →, D)."""
    p = request.path_params
    found = await call(request, _batch, console(request).archive, visit.actor, p["bundle"])
    if not found["started"]:
        return RedirectResponse(f"/qc/{p['bundle']}", status_code=303)
    order = found["b"]["sample"]
    if p["n"] not in order:
        raise access.NotFound(f"page {p['n']} is not in the sample of batch {p['bundle'][:12]}")
    i = order.index(p["n"])
    base = f"/qc/{found['b']['bundle_id']}"
    return render(request, "qc_page.html", visit, n=p["n"], position=i + 1, base=base,
                  prev=f"{base}/{order[i - 1]}" if i > 0 else None,
                  next=f"{base}/{order[i + 1]}" if i + 1 < len(order) else None, **found)


@page
async def image(request: Request, visit, form):
    p = request.path_params
    data = await call(request, _image, console(request).archive, visit.actor, p["bundle"], p["n"])
    return Response(data, media_type="image/jpeg")


@page
async def judge(request: Request, visit, form):
    p = request.path_params
    good = form.get("good") == "1"
    b = await call(request, qc.judge, console(request).archive, visit.actor, p["bundle"], p["n"], good,
                   "" if good else str(form.get("reason", "")))
    left = [n for n in b["sample"] if n not in b["judged"]]
    later = [n for n in left if n > p["n"]] or left
    target = f"/qc/{b['bundle_id']}/{later[0]}" if later else f"/qc/{b['bundle_id']}?summary=1"
    return RedirectResponse(target, status_code=303)


@page
async def decide(request: Request, visit, form):
    b = await call(request, qc.decide, console(request).archive, visit.actor, request.path_params["bundle"])
    return RedirectResponse(f"/qc/{b['bundle_id']}?summary=1", status_code=303)


ROUTES = [
    Route("/qc", batches, methods=["GET"]),
    Route("/qc/{bundle}", batch, methods=["GET"]),
    Route("/qc/{bundle}/start", start, methods=["POST"]),
    Route("/qc/{bundle}/decide", decide, methods=["POST"]),
    Route("/qc/{bundle}/{n:int}", sample, methods=["GET"]),
    Route("/qc/{bundle}/{n:int}.jpg", image, methods=["GET"]),
    Route("/qc/{bundle}/{n:int}/judge", judge, methods=["POST"]),
]
