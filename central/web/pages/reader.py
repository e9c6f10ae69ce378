"""The reader: find a dossier, ask to consult it, follow the requests, read an approved one page by page."""

from datetime import datetime, timezone
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ... import access
from ...errors import CentralError
from ...permissions import Actor
from .. import imaging
from ..base import call, console, marks, page, page_viewer, render


def _marks(actor: Actor, consultation_id: int) -> tuple[str, ...]:
    return marks(actor, f"查阅单第 {consultation_id} 号")


@page
async def home(request: Request, visit, form):
    archive = console(request).archive
    text = request.query_params.get("q", "")
    found = await call(request, access.findable, archive, visit.actor, text) if text else []
    mine = await call(request, access.listing, archive, visit.actor)
    now = datetime.now(timezone.utc).isoformat()
    for c in mine:
        c["active"] = c["state"] == "approved" and (c["expires_at"] or "") > now
    return render(request, "reader.html", visit, q=text, found=found, mine=list(reversed(mine)),
                  max_days=access.MAX_DAYS)


@page
async def file_request(request: Request, visit, form):
    try:
        days = int(form.get("days", "7"))
    except ValueError:
        raise CentralError("查阅天数须为整数 (days must be a whole number)") from None
    await call(request, access.file_request, console(request).archive, visit.actor, str(form.get("archive_no", "")),
               str(form.get("purpose", "")), days, form.get("export") == "1")
    return RedirectResponse("/reader", status_code=303)


@page
async def ask_export(request: Request, visit, form):
    await call(request, access.request_export, console(request).archive, visit.actor,
               request.path_params["cid"])
    return RedirectResponse("/reader", status_code=303)


@page
async def directory(request: Request, visit, form):
    """The dossier's materials by the ten categories, each with its pages' thumbnails."""
    archive, cid, archive_no = console(request).archive, request.path_params["cid"], request.path_params["archive_no"]
    materials = await call(request, access.materials, archive, visit.actor, archive_no, cid)
    consultation = await call(request, access.get, archive, cid)
    groups: dict[str, list[dict]] = {}
    for m in materials:
        groups.setdefault(m["item"].split("-")[0], []).append(m)
    return render(request, "directory.html", visit, c=consultation, groups=groups, base=f"/read/{cid}/{archive_no}",
                  pages=sum(m["page_count"] for m in materials))


@page
async def viewer(request: Request, visit, form):
    """One page, with the way to the previous and next pages (the image itself is fetched separately)."""
    p = request.path_params
    materials = await call(request, access.materials, console(request).archive, visit.actor, p["archive_no"],
                           p["cid"])
    return page_viewer(request, visit, materials, f"/read/{p['cid']}/{p['archive_no']}", p["archive_no"],
                       p["item"], p["n"])


def _image(archive, actor: Actor, cid: int, archive_no: str, item: str, n: int, long_side: int) -> bytes:
    _, blob = access.page(archive, actor, archive_no, item, n, cid)
    with blob:
        return imaging.screen_jpeg(blob, _marks(actor, cid), long_side)


@page
async def image(request: Request, visit, form):
    """A page as the archive renders it for this reader: screen size, watermark burned in, view logged."""
    p = request.path_params
    size = imaging.THUMB_PX if request.query_params.get("size") == "thumb" else imaging.SCREEN_PX
    data = await call(request, _image, console(request).archive, visit.actor, p["cid"], p["archive_no"], p["item"],
                      p["n"], size)
    return Response(data, media_type="image/jpeg")


def _pdf(archive, actor: Actor, cid: int, archive_no: str) -> bytes:
    pages = []
    try:
        for m in access.materials(archive, actor, archive_no, cid):
            for n in range(1, m["page_count"] + 1):
                row, blob = access.page(archive, actor, archive_no, m["item"], n, cid, export=True)
                pages.append((blob, row["dpi"]))
        if not pages:
            raise CentralError(f"dossier {archive_no} has no pages to export")
        return imaging.export_pdf(pages, _marks(actor, cid))
    finally:
        for blob, _ in pages:
            blob.close()


@page
async def export(request: Request, visit, form):
    """The whole dossier as a watermarked PDF, for an approved export; every page logged as exported."""
    p = request.path_params
    data = await call(request, _pdf, console(request).archive, visit.actor, p["cid"], p["archive_no"])
    name = f"{p['archive_no']}-查阅单{p['cid']}.pdf"
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}"})


ROUTES = [
    Route("/reader", home, methods=["GET"]),
    Route("/reader/consult", file_request, methods=["POST"]),
    Route("/reader/consult/{cid:int}/export", ask_export, methods=["POST"]),
    Route("/read/{cid:int}/{archive_no}", directory, methods=["GET"]),
    Route("/read/{cid:int}/{archive_no}/export.pdf", export, methods=["GET"]),
    Route("/read/{cid:int}/{archive_no}/{item}/{n:int}", viewer, methods=["GET"]),
    Route("/read/{cid:int}/{archive_no}/{item}/{n:int}.jpg", image, methods=["GET"]),
]
