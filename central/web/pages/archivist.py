"""The archivist: the catalogue (dossiers → materials → pages), the quarantine, four-eyes changes, versions."""

import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ... import access, changes, dossiers, listing, quarantine
from ...changes import IDENTITY_FIELDS
from ...permissions import ACTIONS, Actor, scoped_units
from ...store import bundles as store_bundles
from ...store import dossiers as store_dossiers
from ...store import materials as store_materials
from .. import imaging
from ..base import call, console, marks, page, page_viewer, render

SHOWN = 200        # dossiers a catalogue page lists
WORK = "档案管理·仅供内部核查"   # the watermark's reason line for catalogue staff


def _size(request: Request) -> int:
    return imaging.THUMB_PX if request.query_params.get("size") == "thumb" else imaging.SCREEN_PX


def _catalogue(archive, actor: Actor, text: str) -> dict:
    """Dossiers of ``actor``'s units whose archive number starts with, or name contains, ``text`` (all
    without one), the first SHOWN of them."""
    access.guard(archive, actor, "catalogue.read")
    units = scoped_units(actor)
    hows = ("archive_no", "name") if text.strip() else (None,)
    found = {r["archive_no"]: r for how in hows
             for r in dossiers.search(archive, **({how: text.strip()} if how else {}), units=units)}
    return {"rows": [found[k] for k in sorted(found)[:SHOWN]], "matched": len(found)}


def _dossier(archive, actor: Actor, archive_no: str) -> dict:
    materials = access.materials(archive, actor, archive_no)   # checks the unit and 回避, logs a refusal
    return {"d": store_dossiers.get(archive.catalogue, archive_no), "materials": materials,
            "waiting": [c for c in (changes.listing(archive, actor, "proposed") if actor.roles & ACTIONS["change.list"]
                                    else []) if c["subject"] == f"dossier:{archive_no}"
                        or c["subject"].startswith(f"material:{archive_no}:")]}


def _material(archive, actor: Actor, archive_no: str, item: str) -> dict:
    materials = access.materials(archive, actor, archive_no)
    m = next((m for m in materials if m["item"] == item), None)
    held = [q for q in quarantine.listing(archive, actor) if (q["archive_no"], q["item"]) == (archive_no, item)]
    return {"m": m, "pages": listing.pages(archive, archive_no, item) if m else [], "archive_no": archive_no,
            "item": item, "history": changes.history(archive, archive_no, item), "held": held,
            "scan_review": _scan_review(archive, archive_no, item) if m else None}


def _scan_review(archive, archive_no: str, item: str) -> dict | None:
    """What the station's operator checked and changed before sealing the current version: the page count
    against the directory (with the confirmation of a difference) and every page edit, from its signed manifest."""
    current = store_materials.get(archive.catalogue, archive_no, item)
    signed = store_bundles.manifest(archive.catalogue, current["bundle_id"]) if current else None
    manifest = json.loads(signed) if signed else {}
    if not manifest.get("count_check") and not manifest.get("page_edits"):
        return None
    return {"count": manifest.get("count_check"), "edits": manifest.get("page_edits") or []}


def _image(archive, actor: Actor, archive_no: str, item: str, n: int, size: int) -> bytes:
    _, blob = access.page(archive, actor, archive_no, item, n)
    with blob:
        return imaging.screen_jpeg(blob, marks(actor, WORK), size)


def _held_image(archive, actor: Actor, bundle_id: str, n: int, size: int) -> bytes:
    _, blob = access.quarantined_page(archive, actor, bundle_id, n)
    with blob:
        return imaging.screen_jpeg(blob, marks(actor, WORK), size)


def _changes(archive, actor: Actor) -> dict:
    """Changes of the kinds ``actor``'s roles propose and decide, each waiting one beside what it replaces."""
    rows = changes.listing(archive, actor)
    for c in rows:
        c["payload"] = json.loads(c["payload"])
        if c["state"] == "proposed":
            c["old"], c["new"] = _sides(archive, actor, c)
    return {"waiting": [c for c in rows if c["state"] == "proposed"],
            "decided": [c for c in reversed(rows) if c["state"] != "proposed"][:50]}


def _sides(archive, actor: Actor, change: dict) -> tuple[dict, dict]:
    """What the change would replace and what it would put in its place, for the second person to compare."""
    p, kind = change["payload"], change["kind"]
    if kind == "revoke_station":
        return {"station": p["station_id"], "state": "已暂停，待复核"}, {"station": p["station_id"], "state": "吊销"}
    materials = {m["item"]: m for m in access.materials(archive, actor, p["archive_no"])}
    if kind == "edit_dossier":
        d = store_dossiers.get(archive.catalogue, p["archive_no"])
        return {"fields": {k: d.get(k) for k in p["fields"]}}, {"fields": p["fields"]}
    old = {"material": materials.get(p["item"]), "pages": (materials.get(p["item"]) or {}).get("page_count", 0)}
    if kind == "withdraw_material":
        return old, {"withdrawn": True}
    held = quarantine.show(archive, actor, p["bundle_id"])
    return old, {"bundle": held, "pages": held["pages"]}


@page
async def catalogue(request: Request, visit, form):
    text = request.query_params.get("q", "")
    found = await call(request, _catalogue, console(request).archive, visit.actor, text)
    return render(request, "catalogue.html", visit, q=text, **found)


@page
async def dossier(request: Request, visit, form):
    found = await call(request, _dossier, console(request).archive, visit.actor, request.path_params["archive_no"])
    return render(request, "dossier.html", visit, **found)


@page
async def material(request: Request, visit, form):
    p = request.path_params
    found = await call(request, _material, console(request).archive, visit.actor, p["archive_no"], p["item"])
    return render(request, "material.html", visit, **found)


@page
async def viewer(request: Request, visit, form):
    """A catalogued page in the viewer (keyboard paging and zoom, like a reader's)."""
    p = request.path_params
    materials = await call(request, access.materials, console(request).archive, visit.actor, p["archive_no"])
    return page_viewer(request, visit, materials, f"/catalogue/{p['archive_no']}", p["archive_no"], p["item"],
                       p["n"])


@page
async def image(request: Request, visit, form):
    """A catalogued page as the archive renders it for its staff: watermarked, the view logged."""
    p = request.path_params
    data = await call(request, _image, console(request).archive, visit.actor, p["archive_no"], p["item"], p["n"],
                      _size(request))
    return Response(data, media_type="image/jpeg")


@page
async def held_list(request: Request, visit, form):
    rows = await call(request, quarantine.listing, console(request).archive, visit.actor)
    return render(request, "quarantine.html", visit, rows=rows, held=None)


@page
async def held(request: Request, visit, form):
    row = await call(request, quarantine.show, console(request).archive, visit.actor, request.path_params["bundle"])
    return render(request, "quarantine.html", visit, rows=None, held=row,
                  conflict_only=all(r["rule"] == "CatalogueConflict" for r in row["reasons"]
                                    if r["severity"] == "reject"))


@page
async def held_image(request: Request, visit, form):
    """A page of a quarantined bundle, watermarked, the view logged."""
    p = request.path_params
    data = await call(request, _held_image, console(request).archive, visit.actor, p["bundle"], p["n"],
                      _size(request))
    return Response(data, media_type="image/jpeg")


@page
async def change_list(request: Request, visit, form):
    found = await call(request, _changes, console(request).archive, visit.actor)
    return render(request, "changes.html", visit, **found)


def _propose(archive, actor: Actor, form: dict) -> dict:
    kind, archive_no = form.get("change", ""), form.get("archive_no", "")
    access.materials(archive, actor, archive_no)   # only on a dossier of one's own units (refused and logged)
    payload = {"archive_no": archive_no}
    if kind == "edit_dossier":
        payload["fields"] = {f: form[f].strip() for f in IDENTITY_FIELDS if form.get(f, "").strip()}
    else:
        payload["item"] = form.get("item", "")
        if kind == "replace_material":
            payload["bundle_id"] = form.get("bundle_id", "")
    return changes.propose(archive, actor, kind, payload, form.get("reason", ""))


@page
async def propose(request: Request, visit, form):
    await call(request, _propose, console(request).archive, visit.actor, {k: str(v) for k, v in form.items()})
    return RedirectResponse("/changes", status_code=303)


@page
async def decide(request: Request, visit, form):
    await call(request, changes.decide, console(request).archive, visit.actor, request.path_params["cid"],
               form.get("approve") == "1", str(form.get("note", "")).strip())
    back = "/admin/stations" if form.get("back") == "/admin/stations" else "/changes"
    return RedirectResponse(back, status_code=303)


ROUTES = [
    Route("/catalogue", catalogue, methods=["GET"]),
    Route("/catalogue/{archive_no}", dossier, methods=["GET"]),
    Route("/catalogue/{archive_no}/{item}", material, methods=["GET"]),
    Route("/catalogue/{archive_no}/{item}/{n:int}", viewer, methods=["GET"]),
    Route("/catalogue/{archive_no}/{item}/{n:int}.jpg", image, methods=["GET"]),
    Route("/quarantine", held_list, methods=["GET"]),
    Route("/quarantine/{bundle}", held, methods=["GET"]),
    Route("/quarantine/{bundle}/{n:int}.jpg", held_image, methods=["GET"]),
    Route("/changes", change_list, methods=["GET"]),
    Route("/changes/propose", propose, methods=["POST"]),
    Route("/changes/{cid:int}/decide", decide, methods=["POST"]),
]
