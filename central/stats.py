"""Statistics of the central archive: pages and bundles, QC pass rates, rejection reasons, coverage,
fixity (scrub runs, damage, backups).

Every function returns rows (a list of dicts) for a table, JSON lines or a chart. Days are UTC
calendar days (YYYY-MM-DD) of the archive's own timestamps; ``since`` and ``until`` are inclusive.
``units`` limits the rows to those units (None: every unit).
"""

import json
import re
import warnings
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

from quire.db import utcnow

from . import audit
from .archive import Archive
from .errors import CentralError
from .store import audit_log, statistics

PAGES_BY = ("station", "operator", "unit", "day")
QC_BY = ("unit", "station", "operator", "inspector", "day")
REJECTIONS_BY = ("rule", "unit", "station", "operator", "day")
CJK_FONTS = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
             "Source Han Sans CN", "SimHei", "Microsoft YaHei", "PingFang SC", "AR PL UMing CN")
MAX_LINES = 10  # a line chart keeps the busiest series and adds the rest up as "other"

def check_day(text: str | None, what: str = "date") -> str | None:
    """``text`` if it is a YYYY-MM-DD calendar day (or None); otherwise a CentralError saying so."""
    if text is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        date.fromisoformat(text)
    except ValueError:
        raise CentralError(f"{what} {text!r} is not a day; write YYYY-MM-DD, e.g. 2026-11-21") from None
    return text


def pages(archive: Archive, by: str = "station", since: str | None = None, until: str | None = None,
          daily: bool = False, units: list[str] | None = None) -> list[dict]:
    """Committed bundles and pages (and rejected bundles) per ``by`` key, per day too when ``daily``."""
    keys = _keys(by, PAGES_BY, daily)
    return _grouped(archive, statistics.BUNDLES, keys, since, until, units)


def qc(archive: Archive, by: str = "unit", since: str | None = None, until: str | None = None,
       daily: bool = False, units: list[str] | None = None) -> list[dict]:
    """QC batches per ``by`` key: accepted, returned, still sampling, pass rate and mean good share."""
    keys = _keys(by, QC_BY, daily)
    rows = _grouped(archive, statistics.QC_BATCHES, keys, since, until, units)
    for row in rows:
        decided = row["accepted"] + row["returned"]
        row["pass_rate"] = row["accepted"] / decided if decided else None
    return rows


def rejections(archive: Archive, by: str = "rule", since: str | None = None, until: str | None = None,
               daily: bool = False, units: list[str] | None = None) -> list[dict]:
    """Quarantined bundles per rule they broke (and per ``by`` key), most frequent first, with an example."""
    keys = _keys(by, REJECTIONS_BY, daily)
    if "rule" not in keys:
        keys.append("rule")
    since, until = _days(since, until)
    groups: dict[tuple, dict] = {}
    for held in statistics.quarantined(archive.catalogue, since, until, units):
        rejected = [r for r in json.loads(held["reasons"]) if r.get("severity") == "reject"]
        for rule in sorted({r["rule"] for r in rejected}):
            key = tuple(rule if k == "rule" else held[k] for k in keys)
            group = groups.setdefault(key, {**dict(zip(keys, key)), "bundles": 0, "findings": 0,
                                            "example": next(r["message"] for r in rejected if r["rule"] == rule)})
            group["bundles"] += 1
            group["findings"] += sum(r["rule"] == rule for r in rejected)
    return sorted(groups.values(), key=lambda g: (*(g[k] for k in keys if k != "rule"), -g["bundles"], g["rule"]))


def coverage(archive: Archive, units: list[str] | None = None) -> list[dict]:
    """Per unit: dossiers catalogued, dossiers with at least one material, expected, and their ratio."""
    rows = statistics.coverage(archive.catalogue)
    out = []
    for row in rows:
        if units is not None and row["unit"] not in units:
            continue
        row["name"] = row["name"] if row["name"] not in (None, row["unit"]) else ""
        row["coverage"] = row["covered"] / row["expected"] if row["expected"] else None
        out.append(row)
    return out


def fixity(archive: Archive, since: str | None = None, until: str | None = None) -> list[dict]:
    """Per day: fixity scrub runs, blobs and bytes re-hashed, damaged blobs found (by the day's last run)
    and restored, and backups taken (with the last snapshot)."""
    days: dict[str, dict] = {}
    for row in audit_log.of_events(archive.catalogue, ("blobs.scrub", "archive.backup")):
        entry = json.loads(row["entry"])
        day = entry["at"][:10]
        if (since and day < since) or (until and day > until):
            continue
        d = days.setdefault(day, {"day": day, "scrub_runs": 0, "blobs": 0, "bytes": 0, "damaged": 0,
                                  "restored": 0, "backups": 0, "snapshot": ""})
        if row["event"] == "blobs.scrub":
            d["scrub_runs"] += 1
            d["blobs"] += entry.get("blobs", 0)
            d["bytes"] += entry.get("bytes", 0)
            d["damaged"] = len(entry.get("damaged", []))
            d["restored"] += len(entry.get("restored", []))
        else:
            d["backups"] += 1
            d["snapshot"] = entry.get("snapshot", "")
    return [days[k] for k in sorted(days)]


def fixity_alarm(archive: Archive) -> dict:
    """The fixity state now: the last scrub run (its time, cycle, what is left) and the damaged blobs it
    found, which stand until a run finds them restored; the last backup."""
    last = {}
    for event in ("blobs.scrub", "archive.backup"):
        row = audit_log.newest(archive.catalogue, event)
        last[event] = json.loads(row["entry"]) if row else None
    scrub = last["blobs.scrub"] or {}
    return {"last_scrub": scrub.get("at"), "cycle_started": scrub.get("cycle_started"),
            "left_in_cycle": scrub.get("left_in_cycle"), "period_days": scrub.get("period_days"),
            "damaged": scrub.get("damaged", []),
            "last_backup": (last["archive.backup"] or {}).get("at"),
            "snapshot": (last["archive.backup"] or {}).get("snapshot")}


def set_expected(archive: Archive, unit: str, expected: int, by: str | None = None) -> dict:
    """Record how many dossiers ``unit`` holds on paper (the coverage denominator); logged."""
    if not unit.strip():
        raise CentralError("name the unit (全宗/单位), e.g. unit-a")
    if expected < 1:
        raise CentralError(f"a unit expects at least 1 dossier, not {expected}")
    with archive.catalogue.transaction() as db:
        row = statistics.unit(db, unit)
        statistics.set_expected(db, unit, expected, utcnow())
        audit.record(db, archive, "unit.expected", unit,
                     {"unit": unit, "dossiers_expected": expected, "was": row["dossiers_expected"] if row else None},
                     by=by)
    return statistics.unit(archive.catalogue, unit)


def line_chart(rows: list[dict], x: str, y: str, series: str | None, path: Path, title: str,
               since: str | None = None, until: str | None = None, percent: bool = False) -> Path:
    """Write a line chart of ``y`` per day ``x`` (one line per ``series`` value) as PNG or SVG by suffix."""
    from matplotlib.ticker import MaxNLocator

    days = sorted({r[x] for r in rows} | {d for d in (since, until) if d})
    totals: dict[str, float] = defaultdict(float)
    for r in rows:
        totals["" if series is None else str(r[series])] += r[y] or 0
    kept = sorted(totals, key=lambda s: (-totals[s], s))
    # Counts add up into "other"; rates do not, so every series of rates keeps its own line.
    other = kept[MAX_LINES - 1:] if len(kept) > MAX_LINES and not percent else []
    values: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        name = "" if series is None else str(r[series])
        if r[y] is not None:
            values["other" if name in other else name][r[x]] += r[y]
    axis = _every_day(days[0], days[-1]) if days else []

    def draw(ax):
        for name in [s for s in kept if s not in other] + (["other"] if other else []):
            # A day without a row had nothing; a rate without a row has no value, so it is left out.
            points = [(d, values[name].get(d, None if percent else 0)) for d in axis]
            points = [(date.fromisoformat(d), v) for d, v in points if v is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(axis) < 40 else None,
                    label=name or y)
        if axis:  # whole days only: matplotlib would tick hours on a short range
            from matplotlib.dates import DateFormatter, DayLocator

            ax.xaxis.set_major_locator(DayLocator(interval=max(1, -(-len(axis) // 12))))
            ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
            first, last = datetime.fromisoformat(axis[0]), datetime.fromisoformat(axis[-1])
            ax.set_xlim(first - timedelta(hours=12), last + timedelta(hours=12))
        ax.set_xlabel(f"{x} (UTC)")
        ax.set_ylabel(y)
        if not percent:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if series is not None and kept:
            ax.legend(title=series, fontsize="small")
        ax.figure.autofmt_xdate()

    return _save(draw, path, title, percent)


def bar_chart(rows: list[dict], x: str, y: str, path: Path, title: str, percent: bool = False,
              notes: list[str] | None = None) -> Path:
    """Write a horizontal bar chart of ``y`` per ``x`` (with optional notes at the bars) as PNG or SVG."""
    from matplotlib.ticker import MaxNLocator

    labels = [str(r[x]) for r in rows]
    heights = [(r[y] or 0) * (100 if percent else 1) for r in rows]

    def draw(ax):
        bars = ax.barh(range(len(rows)), heights, color="#4477aa")
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        ax.set_ylabel(x)
        ax.set_xlabel(f"{y} (%)" if percent else y)
        if percent:
            top = max(100.0, *heights)
            ax.set_xlim(0, top * 1.3)  # room for the notes beside full bars
            ax.set_xticks(range(0, int(top) + 1, 20 if top <= 100 else 50))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        texts = notes or [f"{h:.1f} %" if percent else f"{h:g}" for h in heights]
        ax.bar_label(bars, texts, padding=3, fontsize="small")
        if not percent:
            ax.margins(x=0.15)

    return _save(draw, path, title, False, height=max(3.0, 1.0 + 0.35 * len(rows)))


def cjk_font() -> str | None:
    """The name of an installed font that has Chinese glyphs, or None."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def _save(draw, path: Path, title: str, percent: bool, height: float = 4.5) -> Path:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise CentralError(f"chart file {path.name} must end in .png or .svg")
    font = cjk_font()
    style = {"font.family": "sans-serif", "svg.hashsalt": "quire", "svg.fonttype": "path",
             "font.sans-serif": ([font] if font else []) + list(matplotlib.rcParams["font.sans-serif"])}
    with matplotlib.rc_context(style), warnings.catch_warnings():
        # Without a CJK font, Chinese labels fall back to empty boxes rather than failing the chart.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig = Figure(figsize=(8, height), layout="constrained")  # no pyplot: no display, no global state
        ax = fig.add_subplot()
        draw(ax)
        if percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(title)
        ax.grid(axis="both", alpha=0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=kind, dpi=100, metadata={"Date": None} if kind == "svg" else None)
    tmp.replace(path)
    return path


def _keys(by: str, allowed: tuple, daily: bool) -> list[str]:
    if by not in allowed:
        raise CentralError(f"group by one of {', '.join(allowed)}, not {by!r}")
    return ["day", by] if daily and by != "day" else [by]


def _days(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    since, until = check_day(since, "--since"), check_day(until, "--until")
    if since and until and since > until:
        raise CentralError(f"--since {since} is after --until {until}")
    return since, until


def _grouped(archive: Archive, of: str, keys: list[str], since, until, units) -> list[dict]:
    since, until = _days(since, until)
    return statistics.grouped(archive.catalogue, of, keys, since, until, units)


def _every_day(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
