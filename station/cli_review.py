"""quire-station's directory, review and seal commands: argument parsing and printing over directory and review."""

import json
from contextlib import closing

from .errors import ServiceUnavailable


def add_commands(sub, capture_help: str) -> None:
    d = sub.add_parser("directory", help="a dossier's directory (目录): the page count each material should have",
                       description="Keep each dossier's directory (类号, 材料名称, 形成时间, 页数, 备注): when a "
                                   "material is sealed its page count is checked against it.")
    d_sub = d.add_subparsers(title="directory commands", metavar="COMMAND")
    c = _command(d_sub, "import", cmd_directory_import, help="import a directory from CSV or Excel (.xlsx)",
                 description="Import directories from a CSV file (UTF-8, or GB18030 as Excel saves it) or "
                             "an .xlsx workbook with the headings 类号 (or 类号 and 序号), 材料名称, 形成时间, "
                             "页数, 备注 and 档号. Every row is checked first; a file with any problem "
                             "changes nothing. Each dossier in the file gets this directory in place of "
                             "the one it had.")
    c.add_argument("file", metavar="FILE", help="the directory as .csv or .xlsx")
    c.add_argument("--dossier", help="the dossier's archive number (档号) when the file has no 档号 column")
    c = _command(d_sub, "add", cmd_directory_add, help="type one material into a dossier's directory (or correct it)",
                 description="Add one material to the dossier's directory, or correct the one with this item "
                             "number in its place; checked as an imported row is.")
    c.add_argument("dossier", metavar="D", help="the dossier's archive number (档号)")
    c.add_argument("material", metavar="ITEM", help="the material's item number (类号), e.g. 1-1 or 4-1-2")
    c.add_argument("--title", required=True, help="材料名称, e.g. 干部履历表")
    c.add_argument("--pages", required=True, help="页数: the material's page count")
    c.add_argument("--date-formed", help="形成时间, YYYY-MM-DD, YYYY-MM or YYYY")
    c.add_argument("--remarks", help="备注")
    c = _command(d_sub, "show", cmd_directory_show,
                 help="show a dossier's directory and how far each material is scanned",
                 description="List the dossier's materials with the page count the directory expects and "
                             "the pages scanned on this station.")
    c.add_argument("dossier", metavar="D", help="the dossier's archive number (档号)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c = _command(d_sub, "fetch", cmd_directory_fetch, help="take a dossier's directory from the archive's catalogue",
                 description="Ask the central archive for the dossier's directory as its catalogue holds it "
                             "(only a dossier of this station's unit) and keep it in place of this "
                             "station's.")
    c.add_argument("dossier", metavar="D", help="the dossier's archive number (档号)")
    c.add_argument("--central", help="central service HOST:PORT (default from config)")
    d.set_defaults(func=lambda cfg, args: d.print_help() or 2)

    c = sub.add_parser("seal", help="seal a batch kept open for review",
                       description="Seal a reviewed batch into a signed bundle (its edits recorded in it). When its "
                                   "page count differs from the directory, --confirm-count with the reason is "
                                   "needed; the reason, the operator and the time go into the signed manifest.")
    c.add_argument("dossier", metavar="D", help="the dossier's archive number (档号)")
    c.add_argument("material", metavar="ITEM", help="the material's item number, e.g. 1-1")
    c.add_argument("--confirm-count", metavar="REASON",
                   help="seal although the page count differs from the directory, for this reason")
    c.add_argument("--operator", help="who confirms and seals (default the login name)")
    c.set_defaults(func=cmd_seal)

    r = sub.add_parser("review", help="fix a batch's pages before it is sealed",
                       description="Before a batch is sealed: rescan one page, insert a missed page, or remove a "
                                   "double-fed or stray page with a reason. Every edit is recorded in the bundle "
                                   "(what, which page, why, who, when; a removed page's hash kept). A sealed batch "
                                   "is never changed. Keep batches open for review with 'scan --review'.")
    r_sub = r.add_subparsers(title="review commands", metavar="COMMAND")
    c = _command(r_sub, "show", cmd_review_show, batch=True,
                 help="list a batch's pages, its edits and its count against the directory",
                 description="List the unsealed batch's pages with their flags, the edits made so far, and "
                             "its page count against the directory.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c = _command(r_sub, "rescan", cmd_review_rescan, batch=True, help="scan one page again in place of page N",
                 description="Feed the one sheet side again; it replaces page N (the old page's hash is "
                             "kept in the record).")
    c.add_argument("--page", type=int, required=True, metavar="N", help="the page to replace")
    _capture_arguments(c, capture_help)
    c = _command(r_sub, "insert", cmd_review_insert, batch=True, help="scan a missed page and put it after page N",
                 description="Feed the missed sheet side; it goes after page N (0: first) and the pages "
                             "behind it move up by one.")
    c.add_argument("--after", type=int, required=True, metavar="N", help="the page it follows (0: first)")
    _capture_arguments(c, capture_help)
    c = _command(r_sub, "remove", cmd_review_remove, batch=True,
                 help="remove a double-fed or stray page, with the reason",
                 description="Take page N out of the batch; the pages behind it move down by one. The "
                             "reason and the page's hash are kept in the bundle.")
    c.add_argument("--page", type=int, required=True, metavar="N", help="the page to remove")
    c.add_argument("--reason", required=True, help="why, e.g. \"double feed\" or \"stray sheet\"")
    r.set_defaults(func=lambda cfg, args: r.print_help() or 2)


def print_json(value) -> None:
    """A command's --json output: indented, Chinese as it is."""
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _command(sub, name: str, func, batch: bool = False, **texts):
    """A subcommand running ``func``; with ``batch``, of one dossier's material (D ITEM --operator)."""
    c = sub.add_parser(name, **texts)
    c.set_defaults(func=func)
    if batch:
        _batch_arguments(c)
    return c


def _batch_arguments(c) -> None:
    c.add_argument("dossier", metavar="D", help="the dossier's archive number (档号)")
    c.add_argument("material", metavar="ITEM", help="the material's item number, e.g. 1-1")
    c.add_argument("--operator", help="who makes the edit (default the login name)")


def _capture_arguments(c, capture_help: str) -> None:
    c.add_argument("--source", help=f"capture source: {capture_help} (default from config)")
    c.add_argument("--reason", default="", help="why (recorded with the edit)")


def _open(cfg):
    from .home import open_station

    return open_station(cfg)


def cmd_directory_import(cfg, args) -> int:
    from .directory import import_file

    with closing(_open(cfg)) as station:
        done = import_file(station, args.file, args.dossier)
    for archive_no, count in done.dossiers.items():
        print(f"{archive_no}: directory of {count} material(s) imported")
    return 0


def cmd_directory_add(cfg, args) -> int:
    from .directory import put_entry

    with closing(_open(cfg)) as station:
        entry = put_entry(station, args.dossier, args.material, args.title, args.pages, args.date_formed, args.remarks)
    print(f"{args.dossier} {entry['item']} «{entry['title']}» {entry['pages']} 页 kept in the directory")
    return 0


def cmd_directory_show(cfg, args) -> int:
    from .directory import show

    with closing(_open(cfg)) as station:
        entries = show(station, args.dossier)
    if args.json:
        print_json(entries)
        return 0
    print(f"{args.dossier}: {len(entries)} material(s), from {entries[0]['source']}")
    for e in entries:
        if e["state"] is None:
            scanned = "not scanned"
        else:
            mark = "" if e["matches"] else f" — DIFFERS from the directory's {e['pages']}"
            flagged = f" ({e['blank']} flagged blank)" if e["blank"] else ""
            scanned = f"{e['scanned']} scanned{flagged}, {e['state']}{mark}"
        print(f"  {e['item']:<8} {e['title']}  {e['date_formed'] or '-'}  {e['pages']} 页  ({scanned})"
              + (f"  备注: {e['remarks']}" if e["remarks"] else ""))
    return 0


def cmd_directory_fetch(cfg, args) -> int:
    from .directory import fetch

    with closing(_open(cfg)) as station:
        count = fetch(station, args.dossier, args.central)
    print(f"{args.dossier}: directory of {count} material(s) taken from the archive's catalogue")
    return 0


def cmd_seal(cfg, args) -> int:
    from . import review

    with closing(_open(cfg)) as station:
        bundle_id = review.seal(station, args.dossier, args.material, args.operator or cfg.operator, args.confirm_count)
    print(f"{args.dossier} {args.material}: sealed as bundle {bundle_id[:12]}; the next sync sends it")
    return 0


def cmd_review_show(cfg, args) -> int:
    from . import review

    with closing(_open(cfg)) as station:
        found = review.show(station, args.dossier, args.material)
    pages = [{"n": p["n"], "sha256": p["sha256"], "record": json.loads(p["record_json"])} for p in found.pages]
    if args.json:
        print_json({"state": found.batch["state"], "expected": found.expected, "pages": pages,
                    "edits": found.edits, "note": found.batch["last_error"]})
        return 0
    expected = f", the directory lists {found.expected}" if found.expected is not None else ""
    print(f"{args.dossier} {args.material} «{found.batch['title']}» {found.batch['state']}: {len(pages)} pages"
          f"{expected}" + (" — COUNT DIFFERS" if found.mismatch else ""))
    if found.batch["last_error"]:
        print(f"  {found.batch['last_error']}")
    for p in pages:
        r = p["record"]
        print(f"  page {p['n']:>3}  skew {r.get('skew_deg', 0):+.2f}°  {r.get('colour', '')}"
              + ("  BLANK?" if r.get("blank") else ""))
    for e in found.edits:
        print(f"  edit: {e['action']} page {e['n']} by {e['operator'] or '?'} at {e['at']}: {e['reason']}")
    return 0


def cmd_review_rescan(cfg, args) -> int:
    from . import review

    with closing(_open_for_capture(cfg, args)) as station:
        edit = review.rescan_page(station, args.dossier, args.material, args.page, args.operator or cfg.operator,
                                  args.reason, args.source)
    print(f"{args.dossier} {args.material}: page {edit['n']} rescanned (the replaced page's hash "
          f"{edit['removed_sha256'][:12]} is kept in the record)")
    return 0


def cmd_review_insert(cfg, args) -> int:
    from . import review

    with closing(_open_for_capture(cfg, args)) as station:
        edit = review.insert_page(station, args.dossier, args.material, args.after, args.operator or cfg.operator,
                                  args.reason, args.source)
    print(f"{args.dossier} {args.material}: page inserted as page {edit['n']}; the pages behind it moved up by one")
    return 0


def cmd_review_remove(cfg, args) -> int:
    from . import review

    with closing(_open(cfg)) as station:
        edit = review.remove_page(station, args.dossier, args.material, args.page, args.operator or cfg.operator,
                                  args.reason)
    print(f"{args.dossier} {args.material}: page {edit['n']} removed ({edit['reason']}); its hash "
          f"{edit['removed_sha256'][:12]} is kept in the record, the pages behind it moved down by one")
    return 0


def _open_for_capture(cfg, args):
    """The station, refusing to take the scanner from a running station service (it owns it)."""
    from .control import connect

    if not args.source:
        sock = connect(cfg.control_socket_path)
        if sock is not None:
            sock.close()
            raise ServiceUnavailable("the station service owns the scanner: rescan or insert the page on the kiosk "
                                     "screen, or stop the service (sudo systemctl stop quire-station) and run this "
                                     "again, or give --source")
    return _open(cfg)


def from_directory(cfg, archive_no: str | None, material: dict) -> dict:
    """The material with what the dossier's directory says of it (title, date formed, remarks) where the
    command line left them out; as given when no directory lists it (or its store is not this user's to read)."""
    from .errors import NeedsTechnician, NotInitialised

    if not archive_no or not material.get("item") or material.get("title"):
        return material
    try:
        station = _open(cfg)
    except (NeedsTechnician, NotInitialised):
        return material
    try:
        entry = station.store.directory_entry(archive_no, material["item"])
    finally:
        station.close()
    if entry is None:
        return material
    found = {"title": entry["title"], "date_formed": entry["date_formed"], "remarks": entry["remarks"]}
    return {**{k: v for k, v in found.items() if v}, **{k: v for k, v in material.items() if v}}
