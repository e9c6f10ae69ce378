"""Statistics as a dashboard: figures and tables from ``central.stats``, its charts drawn by the archive as SVG."""

import tempfile
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ... import access, stats
from ...permissions import Actor
from ..base import call, console, page, render

# Charts are drawn one at a time: matplotlib's settings (the Chinese font among them) are process-wide, and
# one chart's rc_context ending while another draws left that one in a font without Chinese glyphs.
_drawing = threading.Lock()


def _scope(actor: Actor) -> list[str] | None:
    return None if "*" in actor.units else sorted(actor.units)


def _figures(archive, actor: Actor, since: str | None, until: str | None) -> dict:
    access.guard(archive, actor, "stats.read")
    units = _scope(actor)
    return {"stations": stats.pages(archive, "station", since, until, units=units),
            "operators": stats.pages(archive, "operator", since, until, units=units),
            "qc": stats.qc(archive, "unit", since, until, units=units),
            "rejections": stats.rejections(archive, "rule", since, until, units=units),
            "coverage": stats.coverage(archive, units)}


def _per_rule(rows: list[dict]) -> list[dict]:
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["rule"]] = totals.get(r["rule"], 0) + r["bundles"]
    return [{"rule": k, "bundles": v} for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]


def _draw(name: str, archive, units, since, until, path: Path) -> None:
    """Write chart ``name`` to ``path`` with the stats module's own chart code."""
    if name == "pages-day":
        stats.line_chart(stats.pages(archive, "day", since, until, units=units), "day", "pages", None, path,
                         "每日入库页数", since, until)
    elif name in ("pages-station", "pages-operator"):
        by = name.split("-")[1]
        stats.bar_chart(stats.pages(archive, by, since, until, units=units), by, "pages", path,
                        f"各{'扫描站' if by == 'station' else '扫描员'}入库页数")
    elif name == "qc-unit":
        rows = [r for r in stats.qc(archive, "unit", since, until, units=units) if r["pass_rate"] is not None]
        stats.bar_chart(rows, "unit", "pass_rate", path, "各单位质检验收通过率", percent=True)
    elif name == "rejections":
        stats.bar_chart(_per_rule(stats.rejections(archive, "rule", since, until, units=units)), "rule", "bundles",
                        path, "隔离原因（批次数）")
    elif name == "coverage":
        rows = stats.coverage(archive, units)
        notes = [f"{r['covered']} / {r['expected']}" if r["expected"] else f"{r['covered']}（应有数未登记）"
                 for r in rows]
        stats.bar_chart(rows, "unit", "coverage", path, "各单位档案数字化覆盖率", percent=True, notes=notes)
    else:
        raise access.NotFound(f"no chart {name!r}")


def _chart(archive, actor: Actor, name: str, since: str | None, until: str | None) -> bytes:
    access.guard(archive, actor, "stats.read")
    with tempfile.TemporaryDirectory(prefix="quire-chart-") as tmp:
        path = Path(tmp) / "chart.svg"
        with _drawing:
            _draw(name, archive, _scope(actor), since, until, path)
        return path.read_bytes()


def _period(request: Request) -> tuple[str | None, str | None]:
    return (stats.check_day(request.query_params.get("since") or None, "起始日期"),
            stats.check_day(request.query_params.get("until") or None, "截止日期"))


@page
async def dashboard(request: Request, visit, form):
    since, until = _period(request)
    found = await call(request, _figures, console(request).archive, visit.actor, since, until)
    query = "&".join(f"{k}={v}" for k, v in (("since", since), ("until", until)) if v)
    return render(request, "stats.html", visit, since=since or "", until=until or "", query=query,
                  pages=sum(r["pages"] for r in found["stations"]), bundles=sum(r["bundles"] for r in found["stations"]),
                  rejected=sum(r["rejected"] for r in found["stations"]), **found)


@page
async def chart(request: Request, visit, form):
    since, until = _period(request)
    data = await call(request, _chart, console(request).archive, visit.actor, request.path_params["name"], since,
                      until)
    return Response(data, media_type="image/svg+xml")


ROUTES = [
    Route("/stats", dashboard, methods=["GET"]),
    Route("/stats/{name}.svg", chart, methods=["GET"]),
]
