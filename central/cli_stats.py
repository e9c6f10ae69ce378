"""quire-central stats: pages, QC pass rates, rejection reasons and coverage as tables, JSON or charts."""

import sys

from . import stats
from .archive import open_archive
from .cli_args import add_json
from .cli_people import actor
from .gate import guard
from .printing import json_lines, table
from .replicate import lag


def add_commands(sub) -> None:
    """Register the stats command group."""
    g = sub.add_parser("stats", help="statistics: pages, QC pass rates, rejection reasons, coverage",
                       description="Statistics of the archive as aligned tables, JSON lines (--json) or PNG/SVG "
                                   "charts (--chart FILE). Days are UTC; --since and --until are inclusive. "
                                   "People see the units they work for.")
    inner = g.add_subparsers(title="stats commands", metavar="COMMAND")
    g.set_defaults(func=lambda cfg, args: g.print_help() or 2)

    c = inner.add_parser("pages", help="bundles and pages committed per station, operator, unit or day",
                         description="Committed bundles and their pages, and bundles rejected into quarantine, "
                                     "per station, operator, unit or day. The chart is a bar chart of pages, or "
                                     "with --daily (or --by day) a line chart of pages per day.")
    c.add_argument("--by", choices=stats.PAGES_BY, default="station", help="group by this (default station)")
    _common(c)
    c.set_defaults(func=cmd_pages)

    c = inner.add_parser("qc", help="QC acceptance (数据验收) pass rates per unit, station, operator or inspector",
                         description="QC batches accepted, returned and still being sampled, the pass rate "
                                     "(accepted ÷ decided) and the mean share of sampled pages judged good. The "
                                     "chart is a bar chart of pass rates, or with --daily a line chart.")
    c.add_argument("--by", choices=stats.QC_BY, default="unit", help="group by this (default unit)")
    _common(c)
    c.set_defaults(func=cmd_qc)

    c = inner.add_parser("rejections", help="why bundles were quarantined: counts per rule",
                         description="Bundles quarantined per standards rule (or catalogue conflict) they broke, "
                                     "most frequent first, with how often the rule was reported (findings) and one "
                                     "example message. A bundle breaking several rules counts once under each.")
    c.add_argument("--by", choices=stats.REJECTIONS_BY, default="rule",
                   help="also group by this (default: by rule only)")
    _common(c)
    c.set_defaults(func=cmd_rejections)

    c = inner.add_parser("coverage", help="digitisation coverage per unit: dossiers with material ÷ expected",
                         description="Per unit: dossiers in the catalogue, those with at least one catalogued "
                                     "material, the number expected on paper (set with 'stats units "
                                     "set-expected') and their ratio; 'expected unknown' until it is set.")
    add_json(c)
    c.add_argument("--chart", metavar="FILE", help="also write a bar chart to FILE (.png or .svg)")
    c.set_defaults(func=cmd_coverage)

    c = inner.add_parser("replication", help="how far behind the off-site copy (异地备份) is",
                         description="The off-site copy's lag by its last signed acknowledgement: audit entries, "
                                     "bundles and blobs it lacks, when it last adopted the primary's state, its "
                                     "last contact and last error ('replica status' exits 1 when it lags).")
    add_json(c)
    c.set_defaults(func=cmd_replication)

    u = inner.add_parser("units", help="what the statistics know about units",
                         description="Record facts about units that the statistics need.")
    u_sub = u.add_subparsers(title="unit commands", metavar="COMMAND")
    u.set_defaults(func=lambda cfg, args: u.print_help() or 2)
    c = u_sub.add_parser("set-expected", help="record how many dossiers a unit holds on paper",
                         description="Record the number of dossiers a unit holds on paper, the denominator of "
                                     "its coverage (an administrator's task; logged in the audit log).")
    c.add_argument("unit", help="the unit (全宗/单位), as stations upload into it, e.g. unit-a")
    c.add_argument("expected", type=int, help="number of dossiers expected, at least 1")
    c.set_defaults(func=cmd_set_expected)


def _common(c) -> None:
    c.add_argument("--daily", action="store_true", help="one row per day and group (a line chart with --chart)")
    c.add_argument("--since", metavar="YYYY-MM-DD", help="from this UTC day on (inclusive)")
    c.add_argument("--until", metavar="YYYY-MM-DD", help="up to this UTC day (inclusive)")
    add_json(c)
    c.add_argument("--chart", metavar="FILE", help="also write a chart to FILE (.png or .svg)")


def _reading(action: str = "stats.read"):
    """Open the archive, identify the person and check ``action`` before the command runs."""
    def wrap(fn):
        def run(cfg, args):
            archive = open_archive(cfg, create=False)
            try:
                who = actor(archive, args)
                guard(archive, who, action)
                return fn(archive, who, args) or 0
            finally:
                archive.close()
        run.__doc__ = fn.__doc__
        return run
    return wrap


def _scope(who) -> list[str] | None:
    return None if "*" in who.units else sorted(who.units)


def _period(args) -> str:
    if not (args.since or args.until):
        return ""
    return f", {args.since or '…'} to {args.until or '…'}"


@_reading()
def cmd_pages(archive, who, args):
    """Pages and bundles per group."""
    daily = args.daily or args.by == "day"
    rows = stats.pages(archive, args.by, args.since, args.until, args.daily, _scope(who))
    keys = ["day", args.by] if args.daily and args.by != "day" else [args.by]
    if args.chart:
        title = f"Pages committed per {'day' if daily else args.by}{_period(args)}"
        if daily:
            stats.line_chart(rows, "day", "pages", None if args.by == "day" else args.by, args.chart, title,
                             args.since, args.until)
        else:
            stats.bar_chart(rows, args.by, "pages", args.chart, title)
    total = {keys[0]: "total", "bundles": sum(r["bundles"] for r in rows), "pages": sum(r["pages"] for r in rows),
             "rejected": sum(r["rejected"] for r in rows)}
    _out(rows, keys + ["bundles", "pages", "rejected"], args, [total] if len(rows) > 1 else [])


@_reading()
def cmd_qc(archive, who, args):
    """QC pass rates per group."""
    rows = stats.qc(archive, args.by, args.since, args.until, args.daily, _scope(who))
    keys = ["day", args.by] if args.daily and args.by != "day" else [args.by]
    if args.chart:
        title = f"QC pass rate per {args.by}{_period(args)}"
        decided = [r for r in rows if r["pass_rate"] is not None]
        if args.daily or args.by == "day":
            stats.line_chart(decided, "day", "pass_rate", None if args.by == "day" else args.by, args.chart,
                             title, args.since, args.until, percent=True)
        else:
            stats.bar_chart(decided, args.by, "pass_rate", args.chart, title, percent=True)
    shown = [{**r, "pass_rate": _percent(r["pass_rate"]), "good_share": _percent(r["good_share"])}
             for r in rows]
    _out(rows, keys + ["batches", "accepted", "returned", "sampling", "pass_rate", "good_share"], args,
         shown=shown)


@_reading()
def cmd_rejections(archive, who, args):
    """Quarantine reasons per rule."""
    rows = stats.rejections(archive, args.by, args.since, args.until, args.daily, _scope(who))
    keys = (["day"] if args.daily and args.by != "day" else []) + [args.by] + (["rule"] if args.by != "rule" else [])
    if args.chart:
        title = f"Bundles quarantined per rule{_period(args)}"
        if args.daily or args.by == "day":
            stats.line_chart(rows, "day", "bundles", "rule", args.chart, title, args.since, args.until)
        else:
            per_rule: dict[str, int] = {}
            for r in rows:
                per_rule[r["rule"]] = per_rule.get(r["rule"], 0) + r["bundles"]
            stats.bar_chart([{"rule": k, "bundles": v} for k, v in sorted(per_rule.items(), key=lambda kv: -kv[1])],
                            "rule", "bundles", args.chart, title)
    shown = [{**r, "example": _clip(r["example"], 70)} for r in rows]
    _out(rows, keys + ["bundles", "findings", "example"], args, shown=shown)


@_reading()
def cmd_coverage(archive, who, args):
    """Coverage per unit."""
    rows = stats.coverage(archive, _scope(who))
    if args.chart:
        notes = [f"{r['covered']} of {r['expected']} ({r['coverage'] * 100:.1f} %)" if r["expected"]
                 else f"{r['covered']} dossier{'' if r['covered'] == 1 else 's'}, expected unknown" for r in rows]
        stats.bar_chart(rows, "unit", "coverage", args.chart, "Dossiers digitised per unit", percent=True,
                        notes=notes)
    shown = [{**r, "expected": r["expected"] if r["expected"] else "",
              "coverage": _percent(r["coverage"]) if r["expected"] else "expected unknown"} for r in rows]
    _out(rows, ["unit", "name", "dossiers", "covered", "expected", "coverage", "materials", "pages"], args,
         shown=shown)


@_reading()
def cmd_replication(archive, who, args):
    """The off-site copy's lag."""
    row = lag(archive)
    _out([row] if row else [], ["copy", "entries_behind", "bundles_behind", "blobs_behind", "replicated_at",
                                "last_contact", "last_error"], args)


@_reading("station.manage")
def cmd_set_expected(archive, who, args):
    """Record a unit's expected dossier count."""
    unit = stats.set_expected(archive, args.unit, args.expected, by=who.label)
    print(f"unit {unit['id']} expects {unit['dossiers_expected']} dossiers; "
          f"'quire-central stats coverage' shows how many are digitised")


def _out(rows, columns, args, extra=(), shown=None):
    if args.json:
        json_lines(rows)
    elif rows:
        table([*(shown if shown is not None else rows), *extra], columns)
    else:
        print("none")
    if getattr(args, "chart", None):
        print(f"chart written to {args.chart}", file=sys.stderr)


def _percent(share):
    return "" if share is None else f"{share * 100:.1f} %"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
