"""quire-station: the scanning station's command-line tool."""

import argparse
import json
import shlex
import sys
import time
from contextlib import closing
from pathlib import Path

from quire import keys
from quire.memory import tune_allocator
from quire.threads import limit_opencv_threads

from . import config as config_mod
from .pipeline.limits import MAX_DPI, MIN_DPI
from .cli_review import print_json
from .errors import NeedsTechnician, StationError, UsageError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tune_allocator()
    limit_opencv_threads()   # the pipeline's workers are the parallelism (quire.threads has the figures)
    try:
        cfg = config_mod.load(args.home, central=getattr(args, "central", None))
        return args.func(cfg, args) or 0
    except NeedsTechnician as exc:
        said = NeedsTechnician(exc.home, exc.owner, _command(sys.argv[1:] if argv is None else argv))
        print(f"quire-station: {said}", file=sys.stderr)
        return exc.exit_code
    except StationError as exc:
        print(f"quire-station: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _command(argv: list[str]) -> str:
    """The command line as given, without --home (the technician's command names the home itself)."""
    words, skip = [], False
    for word in argv:
        if skip or word.startswith("--home="):
            skip = False
        elif word == "--home":
            skip = True
        else:
            words.append(word)
    return shlex.join(words)


def build_parser() -> argparse.ArgumentParser:
    from .capture import SPEC_HELP

    p = argparse.ArgumentParser(prog="quire-station", description="Quire scanning station.")
    p.add_argument("--home", help="state directory (default $QUIRE_STATION_HOME or /var/lib/quire/station)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    c = sub.add_parser("init", help="create the station key and page store",
                       description="Create the station's Ed25519 key (mode 0600) and page store; "
                                   "prints the id, the key fingerprint and how to enrol it with the central archive.")
    c.add_argument("--id", dest="station_id", help="station id (default st- and the key's first digits)")
    c.set_defaults(func=cmd_init)

    c = sub.add_parser("scan", help="scan one material into the page store and seal it",
                       description="Scan one material (材料) of a dossier until the feeder is empty; each "
                                   "page is stored before the next is fed; the material is then sealed into "
                                   "a signed bundle. After a fault, the same command resumes. While the station "
                                   "service runs, it does the scanning (it owns the scanner); without --dossier, "
                                   "--material and --title it runs the next queued batch.")
    c.add_argument("--dossier", help="dossier archive number (档号), e.g. D-0001")
    c.add_argument("--material", help="material item number, e.g. 1-1 or 4-1-2")
    c.add_argument("--title", help="material title, e.g. 干部履历表 (default: the dossier's directory)")
    _dossier_arguments(c)
    c.add_argument("--date-formed", help="date the material was formed (制成日期), YYYY-MM-DD")
    c.add_argument("--remarks", help="remarks (备注)")
    c.add_argument("--source", help=f"capture source: {SPEC_HELP} (default from config)")
    c.add_argument("--dpi", type=_dpi, help="with --source: scan at this resolution; for a folder, the resolution "
                                            "you measured, which overrides what the files state (without it, files "
                                            "that state none get the config dpi, recorded as assumed, and a strict "
                                            "archive refuses them)")
    c.add_argument("--operator", help="who is scanning (default the login name)")
    c.add_argument("--json", action="store_true", help="print one JSON record per page")
    c.add_argument("--rescan", action="store_true",
                   help="scan an already sealed material again, as the replacement QC asked for")
    c.add_argument("--by-cover-sheets", action="store_true",
                   help="feed a whole dossier as one stack: split it at its cover sheets ('quire-station "
                        "coversheets' prints them), one sealed material per sheet")
    c.add_argument("--review", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the batch open for review ('quire-station review', then 'quire-station seal') "
                        "instead of sealing it (default review_before_seal in station.toml)")
    c.set_defaults(func=cmd_scan)

    c = sub.add_parser("coversheets", help="print cover sheets (分隔页) that split a dossier's feed by material",
                       description="Write an A4 PDF with one cover sheet per material of a dossier (a QR code and "
                                   "the same in large type: archive number, item, title), from the materials named, "
                                   "else the dossier's directory on this station, else its queued batches. Put each "
                                   "sheet before its material's first page and feed the whole dossier with "
                                   "'scan --dossier D --by-cover-sheets'.")
    c.add_argument("--dossier", required=True, help="dossier archive number (档号), e.g. D-0001")
    c.add_argument("--item", action="append", default=[], metavar="ITEM[=TITLE]",
                   help="a material to print a sheet for, e.g. 1-1=干部履历表 (repeat; the title may be left out "
                        "when the directory or the queue has it)")
    c.add_argument("--generic", action="count", default=0,
                   help="add a generic 'next material' sheet (the next material in the directory's order; repeat "
                        "for more)")
    c.add_argument("--out", required=True, help="the PDF file to write")
    c.set_defaults(func=cmd_coversheets)

    c = sub.add_parser("enroll", help="ask the central archive to enrol this station and pin its key",
                       description="Find the central archive (--central, config, or zeroconf), check that its TLS "
                                   "certificate is vouched for by its key, ask to be enrolled and pin both. Shows a "
                                   "pairing code the archive operator compares before approving.")
    c.add_argument("--central", help="central service HOST:PORT, or several processes of one archive "
                   "comma-separated (default: config, else zeroconf)")
    c.add_argument("--fingerprint", help="accept only the archive with this key fingerprint (quire-central info)")
    c.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the operator's approval")
    c.set_defaults(func=cmd_enroll)

    c = sub.add_parser("purge", help="free disk: delete page files of committed bundles past retention",
                       description="Delete the local page files of bundles the archive has receipted more than "
                                   "the retention period ago (config retention_days). Nothing else is touched.")
    c.add_argument("--older-than-days", type=float, help="retention in days (default from config)")
    c.set_defaults(func=cmd_purge)

    c = sub.add_parser("sync", help="send sealed bundles to the central archive",
                       description="Offer each queued bundle, upload what the central archive lacks, commit, "
                                   "and store its signed receipt. A bundle the archive refuses is kept aside with "
                                   "the reasons; when it refuses this station (clock, suspension) every bundle "
                                   "stays queued. A broken call is retried for sync_retry_span_s. Exits 6 when "
                                   "the archive's audit log does not extend what this station witnessed.")
    c.add_argument("--central", help="central service HOST:PORT, or several processes of one archive "
                   "comma-separated (default from config)")
    c.set_defaults(func=cmd_sync)

    o = sub.add_parser("outbox", help="act on bundles in the outbox",
                       description="Act on bundles waiting in the outbox ('quire-station status' lists them).")
    o_sub = o.add_subparsers(title="outbox commands", metavar="COMMAND")
    c = o_sub.add_parser("retry", help="queue a rejected bundle again",
                         description="Put a rejected bundle back in the queue, sealed, so the next sync offers it "
                                     "again — after what the archive refused was put right.")
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("bundle", nargs="?", metavar="ID", help="the bundle id, or its first digits (from status)")
    which.add_argument("--all", action="store_true", help="every rejected bundle")
    c.set_defaults(func=cmd_outbox_retry)
    o.set_defaults(func=lambda cfg, args: o.print_help() or 2)

    c = sub.add_parser("checkpoint", help="print the archive's audit checkpoint this station witnessed",
                       description="Print, as JSON, the largest signed checkpoint of the archive's audit log this "
                                   "station holds from its receipts; an auditor checks the archive against it with "
                                   "'quire-central audit verify --checkpoint FILE'.")
    c.set_defaults(func=cmd_checkpoint)

    c = sub.add_parser("status", help="show the station, its batches and its outbox",
                       description="Show the station id and key, interrupted batches and what waits to sync.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser("daemon", help="run the station service (systemd starts it)",
                       description="Run the station service in the foreground: it owns the scanner, runs queued "
                                   "batches when Scan is pressed or 'quire-station scan' asks, and syncs in the "
                                   "background. Talks to systemd (Type=notify, watchdog); SIGTERM finishes the "
                                   "sheet being scanned, then exits.")
    c.set_defaults(func=cmd_daemon)

    q = sub.add_parser("queue", help="prepare batches for the scanner's Scan button",
                       description="Queue materials for the running station service; pressing Scan on the "
                                   "scanner (or 'quire-station scan') runs the next one.")
    q_sub = q.add_subparsers(title="queue commands", metavar="COMMAND")
    c = q_sub.add_parser("add", help="queue one material to scan",
                         description="Queue one material of a dossier; it is scanned when Scan is pressed.")
    c.add_argument("--dossier", required=True, help="dossier archive number (档号), e.g. D-0001")
    c.add_argument("--material", required=True, help="material item number, e.g. 1-1 or 4-1-2")
    c.add_argument("--title", required=True, help="material title, e.g. 干部履历表")
    _dossier_arguments(c)
    c.add_argument("--date-formed", help="date the material was formed (制成日期), YYYY-MM-DD")
    c.add_argument("--remarks", help="remarks (备注)")
    c.add_argument("--operator", help="who is scanning (default the login name)")
    c.set_defaults(func=cmd_queue_add)
    c = q_sub.add_parser("ls", help="list queued batches", description="List the batches waiting for Scan, "
                         "next first, with why the last run of one stopped.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_queue_ls)
    q.set_defaults(func=lambda cfg, args: q.print_help() or 2)

    o = sub.add_parser("operator", help="manage who may sign in on the kiosk screen",
                       description="Station-local operator accounts for the kiosk page: a name and a PIN "
                                   "(6–12 digits, stored argon2id-hashed). The signed-in name is what each batch "
                                   "and its manifest record. Five wrong PINs in a row lock the name for a while.")
    o_sub = o.add_subparsers(title="operator commands", metavar="COMMAND")
    c = o_sub.add_parser("add", help="add an operator (asks for the PIN twice)",
                         description="Add an operator; the PIN is asked twice on the terminal, never on the "
                                     "command line.")
    c.add_argument("name", help="the operator's name as it appears on batches, e.g. 张三")
    c.add_argument("--reset", action="store_true", help="give an existing operator a new PIN, enable and unlock them")
    c.set_defaults(func=cmd_operator_add)
    c = o_sub.add_parser("ls", help="list operators", description="List operators: enabled or disabled, "
                         "wrong PINs in a row, locked until.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_operator_ls)
    c = o_sub.add_parser("disable", help="stop an operator signing in",
                         description="Disable an operator: they can no longer sign in, and their kiosk session "
                                     "ends at its next request ('operator add NAME --reset' enables them again).")
    c.add_argument("name", help="the operator's name")
    c.set_defaults(func=cmd_operator_disable)
    o.set_defaults(func=lambda cfg, args: o.print_help() or 2)

    c = sub.add_parser("doctor", help="check the station and say how to fix what is wrong",
                       description="Check the scanner and its profile, key file permissions, store integrity, "
                                   "disk space, the clock, the central archive and its pinned key, and zeroconf; "
                                   "print OK, WARN or FAIL with the fix for each. Exits 1 when something FAILs.")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.add_argument("--zeroconf-timeout", type=float, default=3.0, metavar="SECONDS",
                   help="how long to listen for the central archive's zeroconf announcement (default 3)")
    c.set_defaults(func=cmd_doctor)

    c = sub.add_parser("process", help="run the image pipeline on existing image files",
                       description="Deskew, crop, flag blanks, choose colour mode and compress each input "
                                   "image (each page of a scanned PDF); print one JSON record per page.")
    c.add_argument("inputs", nargs="+", metavar="IN", help="image files (JPEG, PNG, TIFF …) or scanned PDFs")
    c.add_argument("--out", required=True, help="directory for the processed pages (NAME.jpg/.tif; a PDF's "
                                                "pages NAME-p1, NAME-p2 …)")
    c.add_argument("--dpi", type=_dpi, help="the resolution the pages were scanned at, as you measured it; it "
                                            "overrides what the files state (without it, files that state none "
                                            "get the config dpi, recorded as assumed, with a warning per file)")
    c.set_defaults(func=cmd_process)

    from .cli_review import add_commands as add_review_commands

    add_review_commands(sub, SPEC_HELP)
    return p


def _dpi(text: str) -> int:
    """A --dpi value: a whole number within the resolutions a scanner produces (argparse reports the rest)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of dots per inch, e.g. 300") from None
    if not MIN_DPI <= value <= MAX_DPI:
        raise argparse.ArgumentTypeError(f"{value} dpi is not a scan resolution; give {MIN_DPI}–{MAX_DPI}")
    return value


def cmd_init(cfg, args) -> int:
    from .home import init

    station = init(cfg, args.station_id)
    print(f"station {station.station_id} at {cfg.home}")
    print(f"key fingerprint {keys.fingerprint(station.public_key)}")
    print(f"enrol it: quire-station --home {cfg.home} enroll --central HOST:PORT (the archive operator approves "
          "the pairing code it prints, seeing this fingerprint in 'quire-central stations pending')")
    print(f"or register it at the archive by its public key: quire-central stations add {station.station_id} "
          f"--key {station.public_key.hex()} --unit UNIT")
    station.close()
    return 0


def _dossier_arguments(c) -> None:
    """The dossier's identity fields (DA/T 31 著录), recorded with the first material scanned."""
    c.add_argument("--name", help="the person's name (dossier field)")
    c.add_argument("--sex", choices=["男", "女"], help="the person's sex (dossier field)")
    c.add_argument("--birth-date", help="the person's birth date, YYYY-MM (dossier field)")
    c.add_argument("--post", help="unit and post, e.g. 县委组织部 科长 (dossier field)")
    c.add_argument("--kind", choices=["personnel", "integrity", "party-building"],
                   help="干部人事 / 廉政 / 党建 archive (default personnel)")


def _dossier(args) -> dict:
    dossier = {"archive_no": args.dossier}
    for key in ("name", "sex", "birth_date", "post", "kind"):
        if getattr(args, key, None):
            dossier[key] = getattr(args, key)
    return dossier


def cmd_coversheets(cfg, args) -> int:
    from .coversheet import sheets_for, write_pdf
    from .home import open_station
    from .jobs import JobQueue

    station = open_station(cfg)
    try:
        # The directory (目录) the review helper's store keeps, when this station has it.
        directory = getattr(station.store, "directory", None)
        known = list(directory(args.dossier)) if directory else []
    finally:
        station.close()
    if not known:
        known = [job["material"] for job in JobQueue(cfg.queue_path).jobs()
                 if job["dossier"]["archive_no"] == args.dossier]
    sheets = sheets_for(args.dossier, args.item, known, args.generic)
    count = write_pdf(args.out, sheets)
    print(f"{count} cover sheets for {args.dossier} written to {args.out}: "
          + ", ".join(sheet.item or "next material" for sheet in sheets))
    return 0


def cmd_scan(cfg, args) -> int:
    from .capture import open_source
    from .cli_review import from_directory
    from .control import connect
    from .home import open_station
    from .scan import scan

    dossier = _dossier(args)
    material = {"item": args.material, "title": args.title}
    for key in ("date_formed", "remarks"):
        if getattr(args, key):
            material[key] = getattr(args, key)
    material = from_directory(cfg, args.dossier, material)
    if args.rescan:
        material["rescan"] = True
    if args.review if args.review is not None else cfg.review_before_seal:
        material["review"] = True
    started = time.monotonic()

    def on_page(n: int, record: dict) -> None:
        if args.json:
            print(json.dumps(dict(record, n=n), ensure_ascii=False), flush=True)
        else:
            flags = [record["colour"]] + (["BLANK?"] if record["blank"] else [])
            print(f"page {n:>3}  skew {record['skew_deg']:+.2f}°  {record['bytes'] // 1024:>5} KiB  "
                  f"{' '.join(flags)}", flush=True)
        if record.get("dpi_source") == "assumed":
            print(f"quire-station: warning: page {n}: its file states no resolution, so {record['dpi']} dpi is "
                  "assumed (recorded as assumed; a profile requiring a measured resolution refuses it) — measure "
                  "it and scan with --dpi N", file=sys.stderr, flush=True)

    if args.by_cover_sheets:
        return _scan_by_cover_sheets(cfg, args, dossier, on_page, started)
    if args.dpi is not None and not args.source:
        raise UsageError("--dpi needs --source (the station service scans at the dpi in station.toml)")
    daemon = None if args.source else connect(cfg.control_socket_path)
    if daemon is not None:  # the station service owns the scanner: it scans, we show the pages
        result = _scan_via_daemon(daemon, args, dossier, material, on_page)
    else:
        if not (args.dossier and args.material and material.get("title")):
            raise UsageError("--dossier, --material and --title are required (the title may come from the "
                             "dossier's directory: 'quire-station directory import'); without them 'scan' runs the "
                             "next queued batch, which needs the station service (sudo systemctl start quire-station)")
        station = open_station(cfg)
        try:
            source = args.source if args.dpi is None else open_source(
                args.source, args.dpi, cfg.sane_options, cfg.scanner_page_timeout_s, dpi_given=True)
            result = scan(station, dossier, material, source, args.operator, on_page)
        finally:
            station.close()
    resumed = f" (resumed at page {result.first_page})" if result.first_page > 1 else ""
    if result.bundle_id is None:
        print(f"{result.archive_no} {result.item}: {result.total_pages} pages{resumed}, kept open for review in "
              f"{time.monotonic() - started:.1f} s; check it with 'quire-station review show {result.archive_no} "
              f"{result.item}', then 'quire-station seal {result.archive_no} {result.item}'", file=sys.stderr)
        return 0
    print(f"{result.archive_no} {result.item}: {result.total_pages} pages{resumed}, "
          f"sealed as bundle {result.bundle_id[:12]} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _scan_by_cover_sheets(cfg, args, dossier: dict, on_page, started: float) -> int:
    """A whole dossier in one feed, split at its cover sheets, each material sealed as it ends."""
    from .capture import open_source
    from .control import connect
    from .home import open_station
    from .scan import scan_dossier

    if not args.dossier or args.material or args.title:
        raise UsageError("--by-cover-sheets takes --dossier only: the cover sheets name each material")
    if args.dpi is not None and not args.source:
        raise UsageError("--dpi needs --source (the station service scans at the dpi in station.toml)")
    daemon = None if args.source else connect(cfg.control_socket_path)
    if daemon is not None:  # the station service owns the scanner: it scans and splits, we show the materials
        return _scan_dossier_via_daemon(daemon, args, dossier, on_page, started)
    station = open_station(cfg)
    try:
        directory = getattr(station.store, "directory", None)   # the dossier's 目录, once imported
        source = args.source if args.dpi is None else open_source(
            args.source, args.dpi, cfg.sane_options, cfg.scanner_page_timeout_s, dpi_given=True)
        done = scan_dossier(station, dossier, list(directory(args.dossier)) if directory else [], source,
                            args.operator, on_page,
                            on_material=lambda m: print(f"material {m['item']} {m['title']}", flush=True),
                            review=bool(args.review if args.review is not None else cfg.review_before_seal))
    finally:
        station.close()
    for result in done.materials:
        sealed = (f"sealed as bundle {result.bundle_id[:12]}" if result.bundle_id
                  else result.review_reason or "kept open for review")
        print(f"{result.archive_no} {result.item}: {result.total_pages} pages, {sealed}", file=sys.stderr)
    print(f"{done.archive_no}: {len(done.materials)} materials from one feed ({done.sheets} cover sheets) in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _scan_dossier_via_daemon(sock, args, dossier: dict, on_page, started: float) -> int:
    """The whole-dossier feed run by the station service (queued first), told here material by material."""
    from .control import request

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind == "page":
            on_page(event["n"], event["record"])
        elif kind == "material":
            print(f"material {event['item']} {event.get('title') or ''}", flush=True)
        elif kind == "material_done":
            done = (f"sealed as bundle {event['bundle_id'][:12]}" if event.get("bundle_id")
                    else f"kept open for review: {event['review']}" if event.get("review") else "kept open for review")
            print(f"{args.dossier} {event['item']}: {event['pages']} pages, {done}", file=sys.stderr, flush=True)
        elif event.get("message"):
            print(event["message"], file=sys.stderr, flush=True)

    reply = request(sock, {"op": "scan", "operator": args.operator, "dossier": dossier, "by_cover_sheets": True},
                    on_event)
    print(f"{reply['archive_no']}: {len(reply['materials'])} materials from one feed ({reply['sheets']} cover sheets) "
          f"in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_enroll(cfg, args) -> int:
    from .discovery import find_central
    from .enrol import enroll
    from .home import open_station

    with closing(open_station(cfg)) as station:
        address = args.central or cfg.central or station.store.get_meta("central_address")
        if not address:
            address = find_central(cfg, fingerprint=args.fingerprint)
            print(f"found central archive at {address} (zeroconf)")
        result = enroll(station, address, wait_s=args.wait)
    print(f"central archive {address}  key {result.central_fingerprint}")
    if result.state == "approved":
        print(f"enrolled into unit {result.unit}; central key and certificate pinned")
        return 0
    print(f"pairing code {result.pairing_code}")
    print(f"ask the archive operator to compare the code and run: "
          f"quire-central stations approve {result.pairing_code} --unit UNIT")
    return 75


def cmd_purge(cfg, args) -> int:
    from .home import open_station
    from .purge import purge

    with closing(open_station(cfg)) as station:
        bundles, files = purge(station, args.older_than_days)
    print(f"purged {files} page file(s) of {bundles} committed bundle(s)")
    return 0


def cmd_sync(cfg, args) -> int:
    from .home import open_station
    from .sync import sync

    from .notices import describe

    with closing(open_station(cfg)) as station:
        report = sync(station, args.central)
    print(f"committed {len(report.committed)} bundle(s), {report.pages} pages, "
          f"{report.bytes_sent} bytes sent")
    for notice in report.notices:
        print(describe(notice))
    for bundle_id, reason in report.rejected.items():
        print(f"REJECTED {bundle_id[:12]}: {reason}")
    for bundle_id, reason in report.failed.items():
        print(f"waiting  {bundle_id[:12]}: {reason}")
    if report.stopped:
        print(f"stopped: the central archive refuses this station for now ({report.stopped}); every bundle stays "
              "queued and is offered again at the next sync", file=sys.stderr)
    for alarm in report.alarms:
        print(alarm, file=sys.stderr)
    if report.alarms:
        return 6
    return 4 if report.rejected or report.failed or report.stopped else 0


def cmd_outbox_retry(cfg, args) -> int:
    from . import outbox
    from .home import open_station

    with closing(open_station(cfg)) as station:
        queued = outbox.retry(station.store, None if args.all else args.bundle)
    for bundle in queued:
        print(f"{bundle['id'][:12]} queued again (was rejected: {bundle['last_error']})")
    print(f"{len(queued)} bundle(s) queued again; the next sync offers them")
    return 0


def cmd_checkpoint(cfg, args) -> int:
    from .home import open_station
    from .witness import held_checkpoint

    with closing(open_station(cfg)) as station:
        checkpoint = held_checkpoint(station.store)
    print(json.dumps(checkpoint, ensure_ascii=False))
    return 0


def _checked_receipts(store, central_key_hex: str | None) -> dict:
    """Every kept receipt checked again under the pinned archive key: how many verify, which do not and why."""
    from quire import receipt as receipt_format
    from quire.errors import ContractError

    from . import outbox

    verified, failed = 0, []
    for row in outbox.receipts(store):
        try:
            if not central_key_hex:
                raise ContractError("no archive key is pinned")
            receipt_format.verify(bytes(row["receipt"]), bytes(row["receipt_signature"]),
                                  bytes.fromhex(central_key_hex), row["id"])
            verified += 1
        except ContractError as exc:
            failed.append({"bundle": row["id"], "why": str(exc)})
    return {"verified": verified, "failed": failed}


def cmd_status(cfg, args) -> int:
    from . import outbox
    from .home import open_station
    from .notices import describe, held
    from .spool import feed_again, waiting_per_batch

    try:
        station = open_station(cfg)
    except NeedsTechnician as exc:
        return _status_from_service(cfg, args, exc)
    try:
        bundles = outbox.bundles(station.store)
        open_batches = [b for b in station.store.batches() if b["state"] != "sealed"]
        spooled = waiting_per_batch(station.store.db)  # captured this boot, stored by the next scan
        central = station.store.get_meta("central_key")
        info = {
            "station_id": station.station_id,
            "public_key": station.public_key.hex(),
            "key_fingerprint": keys.fingerprint(station.public_key),
            "home": str(cfg.home),
            "central": cfg.central or station.store.get_meta("central_address"),
            "central_key_pinned": bool(central),
            # each archive process address: "" when it answered at the end of the last sync, else why not
            "central_answered": json.loads(station.store.get_meta("central_answered") or "{}"),
            "sync_state": station.store.get_meta("sync_state"),
            "history_alarm": station.store.get_meta("history_alarm"),
            "rescan_requests": [n for n in held(station) if n["kind"] == "rescan"],
            "batches_open": [dict({k: b[k] for k in ("archive_no", "item", "title", "state", "last_error")},
                                  pages=b["pages"] + spooled.get(b["id"], 0), pages_spooled=spooled.get(b["id"], 0),
                                  feed_again=feed_again(station.store.db, b["id"],
                                                        b["pages"] + spooled.get(b["id"], 0)))
                             for b in open_batches],
            "bundles": bundles,
            "outbox": {s: sum(1 for b in bundles if b["state"] == s)
                       for s in ("sealed", "uploading", "committed", "rejected", "purged")},
            "receipts": _checked_receipts(station.store, central),
        }
    finally:
        station.close()
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    print(f"station {info['station_id']}  home {info['home']}")
    print(f"key fingerprint {info['key_fingerprint']}")
    print(f"central {info['central'] or '(not configured)'}  key pinned: {'yes' if central else 'no'}")
    if info["sync_state"]:
        print(f"central {info['sync_state']}")
    answered = info["central_answered"].get("addresses") or {}
    if answered:
        print(f"central addresses at {info['central_answered']['at']}: " + "; ".join(
            f"{where} {'answered' if not why else 'did not answer (' + why + ')'}" for where, why in answered.items()))
    if info["history_alarm"]:
        print(info["history_alarm"])
    for notice in info["rescan_requests"]:
        print(describe(notice))
    for b in info["batches_open"]:
        unstored = (f" ({b['pages_spooled']} of them captured but not processed yet: the next scan stores "
                    f"{'it' if b['pages_spooled'] == 1 else 'them'})" if b["pages_spooled"] else "")
        print(f"batch {b['archive_no']} {b['item']} {b['state']}: {b['pages']} pages{unstored}"
              + (f" — {b['last_error']}" if b["last_error"] else f" — {b['feed_again']}"))
    box = info["outbox"]
    waiting = box["sealed"] + box["uploading"]
    print(f"outbox: {waiting} waiting, {box['committed']} committed, {box['rejected']} rejected")
    checked = info["receipts"]
    if checked["verified"] or checked["failed"]:
        print(f"receipts: {checked['verified']} verified against the pinned archive key"
              + (f", {len(checked['failed'])} DO NOT VERIFY" if checked["failed"] else ""))
    for failure in checked["failed"]:
        print(f"  {failure['bundle'][:12]} receipt does not verify: {failure['why']} — keep this station's "
              "store for the archive's auditor")
    for b in bundles:
        if b["state"] in ("committed", "purged"):
            continue
        state = b["state"]
        if state == "uploading" and b["bytes"]:
            state = f"uploading {min(100, 100 * b['uploaded_bytes'] // b['bytes'])} %"
        why = b["last_error"] or ("waiting for the next sync" if b["state"] == "sealed" else "")
        print(f"  {b['id'][:12]} {b['archive_no']} {b['item']} {state}, {b['pages']} pages"
              + (f" — {why}" if why else ""))
    return 0


def _status_from_service(cfg, args, private: NeedsTechnician) -> int:
    """Status for a member of the control group: what the running service tells, never the private files."""
    from .control import connect, request
    from .errors import ServiceUnavailable

    full = f"sudo -u {private.owner} quire-station --home {cfg.home} status"
    sock = connect(cfg.control_socket_path)
    if sock is None:
        raise ServiceUnavailable(f"the station service is not running (nothing answers on {cfg.control_socket_path}), "
                                 f"and only {private.owner} and root may read the station's store in {cfg.home}; "
                                 f"start the service (sudo systemctl start quire-station), or ask the technician "
                                 f"for the full status: {full}")
    reply = request(sock, {"op": "status"})
    info = {"station_id": reply["station_id"], "key_fingerprint": reply["key_fingerprint"], "home": str(cfg.home),
            "service": reply["status"], "pid": reply["pid"], "queued": reply["queued"],
            "batches_and_outbox": f"only {private.owner} and root may read them: {full}"}
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    print(f"station {info['station_id']}  home {info['home']}")
    print(f"key fingerprint {info['key_fingerprint']}")
    print(f"service running (pid {info['pid']}): {info['service']}")
    print(f"queued: {info['queued']} batch{'' if info['queued'] == 1 else 'es'} ('quire-station queue ls' lists them)")
    print(f"batches, outbox and receipts: {info['batches_and_outbox']}")
    return 0


def cmd_process(cfg, args) -> int:
    from .capture import pagefile
    from .pipeline import process_page

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a directory for the processed pages (created if missing)")
    planned, failures = [], 0
    for name in args.inputs:  # every header checked before anything is decoded or written
        try:
            planned += pagefile.inspect(name, args.dpi, cfg.dpi)
        except UsageError as exc:
            print(f"quire-station: {exc}; skipped", file=sys.stderr, flush=True)
            failures += 1
    _distinct_outputs(planned)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the --out directory {out} ({exc.strerror}); name another") from None
    for page in planned:
        if page.dpi_source == "assumed":
            print(f"quire-station: warning: {page.origin}: the file states no resolution, so {page.dpi} dpi is "
                  "assumed (recorded as assumed) — measure it and give --dpi N", file=sys.stderr, flush=True)
        try:
            raw = pagefile.decode(page)
        except UsageError as exc:
            print(f"quire-station: {exc}; skipped", file=sys.stderr, flush=True)
            failures += 1
            continue
        processed = process_page(raw.image, raw.dpi, cfg.pipeline, raw.dpi_source)
        target = out / (page.stem + processed.suffix)
        if target.resolve() == page.path.resolve():
            raise UsageError(f"{target} would overwrite its input; choose another --out directory")
        target.write_bytes(processed.data)
        where = {"input": str(page.path)} | ({"page": page.index + 1} if page.index is not None else {})
        print(json.dumps(dict(processed.record, **where, output=str(target)), ensure_ascii=False), flush=True)
    return 1 if failures else 0


def _distinct_outputs(planned: list) -> None:
    """Refuse, before anything is written, inputs whose processed pages would take the same file name."""
    by_name: dict[str, list[str]] = {}
    for page in planned:
        by_name.setdefault(page.stem, []).append(page.origin)
    clashes = [f"{' and '.join(origins)} would both be written as {stem}" for stem, origins in by_name.items()
               if len(origins) > 1]
    if clashes:
        raise UsageError("; ".join(clashes) + " in the --out directory, one over the other; nothing was processed "
                         "— process them in separate runs with different --out directories, or rename one")


def _scan_via_daemon(sock, args, dossier: dict, material: dict, on_page):
    from types import SimpleNamespace

    from .control import request

    message = {"op": "scan", "operator": args.operator}
    if args.dossier or args.material or args.title:
        message.update(dossier=dossier, material=material)

    def on_event(event: dict) -> None:
        if event.get("event") == "page":
            on_page(event["n"], event["record"])
        elif event.get("message"):
            print(event["message"], file=sys.stderr, flush=True)

    return SimpleNamespace(**request(sock, message, on_event))


def _daemon_request(cfg, message: dict) -> dict:
    from .control import connect, request
    from .errors import ServiceUnavailable

    sock = connect(cfg.control_socket_path)
    if sock is None:
        raise ServiceUnavailable(f"the station service is not running (nothing answers on {cfg.control_socket_path}); "
                                 "start it with 'sudo systemctl start quire-station'")
    return request(sock, message)


def cmd_daemon(cfg, args) -> int:
    from .daemon import main as run_daemon

    return run_daemon(cfg)


def cmd_queue_add(cfg, args) -> int:
    dossier = _dossier(args)
    material = {"item": args.material, "title": args.title}
    material.update({k: getattr(args, k) for k in ("date_formed", "remarks") if getattr(args, k)})
    reply = _daemon_request(cfg, {"op": "queue_add", "dossier": dossier, "material": material,
                                  "operator": args.operator})
    print(f"queued {args.dossier} {args.material} «{args.title}» at position {reply['position']}; "
          "press Scan on the scanner (or run 'quire-station scan') when the sheets are in the feeder")
    return 0


def cmd_queue_ls(cfg, args) -> int:
    reply = _daemon_request(cfg, {"op": "queue_ls"})
    if args.json:
        print_json(reply["jobs"])
        return 0
    print(reply["status"])
    if not reply["jobs"]:
        print("no batches queued")
    for n, job in enumerate(reply["jobs"], 1):
        running = "  (scanning)" if job["id"] == reply["current"] else ""
        print(f"{n:>3}. {job['dossier']['archive_no']} {job['material']['item']} «{job['material']['title']}» "
              f"by {job['operator']}{running}")
        if job.get("last_error"):
            print(f"     last stop: {job['last_error']}")
    return 0


def _operators(cfg):
    from .home import private
    from .operators import Operators

    with private(cfg):
        if not cfg.home.exists():
            raise UsageError(f"no station at {cfg.home}; run 'quire-station init' first")
        return Operators(cfg.home)


def cmd_operator_add(cfg, args) -> int:
    import getpass

    from .operators import check_name, check_pin

    name = check_name(args.name)
    pin = getpass.getpass(f"PIN for {name} (6–12 digits): ")
    check_pin(pin)
    if getpass.getpass("the same PIN again: ") != pin:
        raise UsageError("the two PINs differ; nothing was changed — run the command again")
    with closing(_operators(cfg)) as operators:
        new = operators.add(name, pin, reset=args.reset)
    print(f"operator {name} {'added' if new else 'has a new PIN and may sign in'}; they sign in on the kiosk page")
    return 0


def cmd_operator_ls(cfg, args) -> int:
    with closing(_operators(cfg)) as operators:
        listed = operators.list()
    if args.json:
        print_json(listed)
        return 0
    if not listed:
        print("no operators; add one with 'quire-station operator add NAME'")
    for o in listed:
        state = f"disabled {o['disabled_at']}" if o["disabled_at"] else "enabled"
        if o["locked_until"] and o["locked_until"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()):
            state += f", locked until {o['locked_until']}"
        elif o["failures"]:
            state += f", {o['failures']} wrong PIN(s) in a row"
        print(f"{o['name']:<16} {state}; PIN set {o['pin_set_at']}")
    return 0


def cmd_operator_disable(cfg, args) -> int:
    with closing(_operators(cfg)) as operators:
        operators.disable(args.name)
    print(f"operator {args.name} disabled; they can no longer sign in on the kiosk")
    return 0


def cmd_doctor(cfg, args) -> int:
    from .doctor import run_checks

    checks = run_checks(cfg, zeroconf_timeout_s=args.zeroconf_timeout)
    if args.json:
        print_json([c.as_dict() for c in checks])
    else:
        for check in checks:
            print(check.line())
    return 1 if any(c.level == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
