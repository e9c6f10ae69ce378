"""quire-central: the archive service and its administration commands."""

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from quire import checkpoint as checkpoint_format
from quire import keys
from quire.errors import ContractError
from quire.memory import tune_allocator
from station.notify import Notifier   # the sd_notify client both daemons' units use (stdlib only)

from . import audit, changes, cli_people, cli_stats, export, export_verify, listing, profile, quarantine, sm3, stations
from . import backup, scrub, stats, transfer
from . import cli_migrate, cli_replica
from . import config as config_mod
from .archive import open_archive
from .cli_args import add_json, add_quick, print_verify_report
from .cli_people import as_person
from .errors import CentralError
from .gate import dossier_unit, guard
from .printing import json_lines as _json_lines
from .printing import table as _table
from .verify import verify


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tune_allocator()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_mod.load(args.home, **{k: getattr(args, k, None) for k in
                                            ("listen", "insecure", "advertise", "zeroconf_interfaces")})
        return args.func(cfg, args) or 0
    except CentralError as exc:
        print(f"quire-central: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _loaded_when_run(module: str, name: str):
    """Command ``name`` of ``module``, imported only when that command runs: serving needs the gRPC servicers,
    the web console and zeroconf, which every other command would otherwise import for nothing. The module
    sits in the interface layer of pyproject's import contracts, so its own imports are checked there."""
    def run(cfg, args) -> int:
        return getattr(importlib.import_module(module), name)(cfg, args)
    run.__qualname__ = f"{module}.{name}"
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quire-central", description="Quire central archive service.")
    p.add_argument("--home", help="state directory (default $QUIRE_CENTRAL_HOME or /var/lib/quire/central)")
    p.add_argument("-v", "--verbose", action="store_true", help="log each call to stderr")
    p.add_argument("--token-file", help="file holding your user token (default $QUIRE_TOKEN); not needed while "
                                        "the archive has no users")
    # The command and its subcommand name what a person did in the audit log's login entry.
    p.set_defaults(subcommand=None)
    sub = p.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    c = sub.add_parser("init", help="create the archive's key and catalogue",
                       description="Create the central key (mode 0600) and catalogue; safe to repeat.")
    c.set_defaults(func=cmd_init)

    c = sub.add_parser("serve", help="run the archive service",
                       description="Serve stations over gRPC; prints 'listening on HOST:PORT' once ready.")
    c.add_argument("--listen", help="HOST:PORT to listen on (port 0 picks a free port)")
    c.add_argument("--insecure", action="store_true", default=None,
                   help="plain-text gRPC without TLS, for a lab only")
    c.add_argument("--no-advertise", dest="advertise", action="store_false", default=None,
                   help="do not announce the service by zeroconf")
    c.add_argument("--zeroconf-interface", dest="zeroconf_interfaces", action="append",
                   help="address to announce on (repeatable; default all interfaces)")
    c.add_argument("--web", metavar="HOST:PORT", help="also serve the web console there (port 0 picks a free "
                                                      "port); prints 'web on URL' once ready")
    c.add_argument("--web-http", action="store_true",
                   help="serve the console as plain HTTP: only on a loopback address, behind a TLS reverse proxy")
    c.add_argument("--web-cert", metavar="FILE", help="the console's TLS certificate chain (PEM; default the "
                                                      "archive's own, HOME/tls/cert.pem)")
    c.add_argument("--web-key", metavar="FILE", help="the private key of --web-cert (PEM)")
    c.set_defaults(func=_loaded_when_run("central.cli_serve", "cmd_serve"))

    c = sub.add_parser("info", help="show the archive's key fingerprint and counts",
                       description="Show the central key fingerprint (stations pin it) and what is stored.")
    c.set_defaults(func=cmd_info)

    st = sub.add_parser("stations", help="register and list scanning stations",
                        description="Register and list the stations allowed to upload.")
    st_sub = st.add_subparsers(title="station commands", metavar="COMMAND", dest="subcommand")
    c = st_sub.add_parser("add", help="register a station's public key",
                          description="Register a station (its id and the public key 'quire-station init' printed).")
    c.add_argument("station_id", help="the station's id, e.g. st-1a2b3c4d")
    c.add_argument("--key", required=True, help="the station's Ed25519 public key, 64 hex digits")
    c.add_argument("--unit", required=True, help="the unit (全宗/单位) the station uploads into")
    c.set_defaults(func=cmd_stations_add)
    c = st_sub.add_parser("pending", help="list stations waiting for enrolment approval",
                          description="List enrolment requests with their pairing codes, to compare with the "
                                      "code each station shows.")
    c.set_defaults(func=cmd_stations_pending)
    c = st_sub.add_parser("approve", help="enrol a waiting station after comparing its pairing code",
                          description="Enrol the station that shows this pairing code into a unit.")
    c.add_argument("code", help="the pairing code both the station and 'stations pending' show, e.g. 1234-5678")
    c.add_argument("--unit", required=True, help="the unit (全宗/单位) the station uploads into")
    c.set_defaults(func=cmd_stations_approve)
    c = st_sub.add_parser("revoke", help="stop a station at once; a second administrator confirms",
                          description="Suspend a station at once (every later call and upload is refused and "
                                      "logged) and propose its revocation, which a second administrator "
                                      "confirms with 'changes approve' (or refuses, which reinstates it).")
    c.add_argument("station_id", help="the station to revoke")
    c.add_argument("--reason", required=True, help="why (kept with the change), e.g. 'station stolen'")
    c.set_defaults(func=cmd_stations_revoke)
    c = st_sub.add_parser("ls", help="list registered stations", description="List registered stations.")
    add_json(c, "JSON")
    c.set_defaults(func=cmd_stations_ls)
    st.set_defaults(func=lambda cfg, args: st.print_help() or 2)

    c = sub.add_parser("ls", help="list dossiers, a dossier's materials, or a material's pages",
                       description="No argument: dossiers. ARCHIVE_NO: its materials. ARCHIVE_NO ITEM: pages.")
    c.add_argument("archive_no", nargs="?", help="dossier archive number (档号)")
    c.add_argument("item", nargs="?", help="material item number, e.g. 4-1-2")
    add_json(c)
    c.set_defaults(func=cmd_ls)

    c = sub.add_parser("verify", help="re-check every blob, signature and catalogue row",
                       description="Re-hash every stored blob and re-check every bundle signature and "
                                   "catalogue row, and the catalogue and checkpoints against the audit log; "
                                   "exit 1 and print one line per problem if any.")
    add_quick(c)
    c.set_defaults(func=cmd_verify)
    c = sub.add_parser("sm3-backfill", help="record the SM3 of blobs stored before SM3 was recorded",
                       description="Hash every stored blob that has no SM3 yet (密评, GB/T 39786), checking its "
                                   "SHA-256 on the way; resumable, logged in the audit log. Run once after "
                                   "upgrading an archive; 'verify' names blobs still without one.")
    c.set_defaults(func=cmd_sm3_backfill)
    _add_backup_commands(sub)
    _add_export_commands(sub)
    _add_standards_commands(sub)
    cli_people.add_commands(sub)
    cli_stats.add_commands(sub)
    cli_replica.add_commands(sub)
    cli_migrate.add_commands(sub)
    return p


def _add_backup_commands(sub) -> None:
    """backup, restore and scrub: host jobs (systemd timers) that read the archive's files directly."""
    c = sub.add_parser("backup", help="take an encrypted restic snapshot of the archive",
                       description="Copy the catalogue consistently (SQLite's backup API) and back it up with the "
                                   "blobs, keys and settings into a restic repository (encrypted, deduplicated); "
                                   "logged in the audit log. Runs as the host's user (quire-backup.timer).")
    c.add_argument("--repo", help="restic repository, e.g. /media/backup/quire or s3:… (default backup_repo in "
                                  "central.toml)")
    c.add_argument("--password-file", help="the repository's password, one line, mode 0600 (default "
                                           "$RESTIC_PASSWORD_FILE, then backup_password_file in central.toml)")
    c.add_argument("--init", action="store_true", help="create the repository first if it does not exist")
    c.add_argument("--check", action="store_true",
                   help="then check the repository and re-read tonight's part of its data (1/scrub_period_days, "
                        "so the whole copy is read within the period); logged, exit 1 if it is damaged")
    c.set_defaults(func=cmd_backup)
    c = sub.add_parser("restore", help="restore a restic snapshot into a new archive home",
                       description="Restore the latest (or a named) snapshot 'backup' took into a new, empty home; "
                                   "then run 'quire-central --home HOME verify' and 'audit verify'.")
    c.add_argument("--repo", help="restic repository (default backup_repo in central.toml)")
    c.add_argument("--password-file", help="the repository's password file, mode 0600 (default "
                                           "$RESTIC_PASSWORD_FILE, then backup_password_file in central.toml)")
    c.add_argument("--to", required=True, help="the new home (must not exist or be empty)")
    c.add_argument("--snapshot", default="latest", help="restic snapshot id (default the latest of this tool's)")
    c.set_defaults(func=cmd_restore)
    c = sub.add_parser("scrub", help="re-hash tonight's share of the blobs (fixity audit)",
                       description="Re-read a share of the stored blobs and check their SHA-256 and SM3, so that "
                                   "every blob is read once within scrub_period_days (central.toml); where it got "
                                   "to and what it found go to the audit log. Exit 1 and one line per damaged blob "
                                   "(its pages and the copy to restore it from) if any. quire-scrub.timer runs it "
                                   "nightly.")
    c.add_argument("--all", action="store_true", help="read every blob the current cycle has left, now")
    c.add_argument("--report", action="store_true",
                   help="read nothing: show the damage that stands, the cycle, the last backup and the daily "
                        "statistics of scrubs and backups (exit 1 while damage stands)")
    c.set_defaults(func=cmd_scrub)


def _add_export_commands(sub) -> None:
    """export and verify-export: a dossier leaves the archive as a bag anyone can check."""
    c = sub.add_parser("export", help="write a dossier (or one material) as a BagIt bag anyone can verify",
                       description="Write the dossier's page files, signed manifests, receipts, the archive's "
                                   "public key, audit-log inclusion proofs against a signed checkpoint and the "
                                   "目录 listing (CSV) as a BagIt bag, signed by the archive and logged. An "
                                   "archivist of the dossier's unit may export (transfer, backup); a reader only "
                                   "with a consultation whose export was approved (--consultation).")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("item", nargs="?", help="only this material, e.g. 4-1-2")
    c.add_argument("--out", required=True, help="the bag's directory (must not exist yet)")
    c.add_argument("--consultation", type=int, help="a reader's consultation with an approved export")
    c.add_argument("--reason", default="", help="why (transfer, backup, …); recorded in the audit log")
    c.add_argument("--transfer", action="store_true",
                   help="the transfer (转递) package of a dossier whose transfer was approved ('transfer')")
    c.set_defaults(func=cmd_export)
    c = sub.add_parser("transfer", help="propose transferring (转递) a dossier to another organisation",
                       description="Propose the transfer; when a second archivist of the unit approves it with "
                                   "'changes approve', the dossier is marked transferred (no further consultation, "
                                   "export or change here, both logged) and 'export --transfer' writes its signed "
                                   "package for the receiving archive.")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("--to", required=True, help="the receiving organisation")
    c.add_argument("--reason", required=True, help="why, e.g. the cadre's new post (kept with the change)")
    c.set_defaults(func=cmd_transfer)
    c = sub.add_parser("import", help="receive a transfer (转递) package into one of this archive's units",
                       description="Verify everything in a package another Quire archive wrote with 'export "
                                   "--transfer' (as verify-export does, under the sending archive's key, which you "
                                   "must give), then catalogue the dossier under your unit: each material judged by "
                                   "the unit's standards profile, given this archive's receipt, logged.")
    c.add_argument("bag", help="the package's directory")
    c.add_argument("--unit", required=True, help="the unit (全宗/单位) that holds the dossier here")
    c.add_argument("--from-key", required=True, metavar="FINGERPRINT",
                   help="the sending archive's key fingerprint (SHA256:…), obtained from it out of band")
    c.set_defaults(func=cmd_import)
    c = sub.add_parser("verify-export", help="check an exported bag offline (needs no archive)",
                       description="Check a bag 'export' wrote with nothing but the bag: BagIt validity, the "
                                   "archive's signature, each manifest's station signature, each page against "
                                   "its signed digest, order and count, receipts, audit inclusion proofs, the "
                                   "目录 and the SM3 manifest. Prints every problem; exit 1 if any.")
    c.add_argument("bag", help="the bag's directory")
    c.add_argument("--archive-key", metavar="FINGERPRINT",
                   help="require this archive key (SHA256:…, as 'quire-central info' prints at the archive)")
    c.set_defaults(func=cmd_verify_export)
    for verb, doing in (("seal", "Seal (封存) a dossier: it stays listed, marked sealed, and nobody consults, exports "
                                 "or changes it"), ("unseal", "Unseal a sealed dossier")):
        c = sub.add_parser(verb, help=f"propose to {verb} a dossier; a second archivist of its unit approves",
                           description=f"{doing}. Proposed by an archivist of the dossier's unit with a reason; "
                                       "takes effect when a second one runs 'changes approve'. Both are logged.")
        c.add_argument("archive_no", help="dossier archive number (档号)")
        c.add_argument("--reason", required=True, help="why (kept with the change and in the audit log)")
        c.set_defaults(func=cmd_seal, kind=f"{verb}_dossier")


def _add_standards_commands(sub) -> None:
    """The profiles, quarantine and audit command groups."""
    pr = sub.add_parser("profiles", help="list, show and assign standards profiles",
                        description="Standards profiles (rules as data): the shipped gbt33870 and dat31, and "
                                    "any in HOME/profiles; which unit is judged by which.")
    pr_sub = pr.add_subparsers(title="profile commands", metavar="COMMAND", dest="subcommand")
    c = pr_sub.add_parser("ls", help="list available profiles and the units using them",
                          description="List every profile with its version, and the units assigned to it.")
    add_json(c)
    c.set_defaults(func=cmd_profiles_ls)
    c = pr_sub.add_parser("show", help="print one profile's settings",
                          description="Print every setting of a profile, after 'extends' is resolved.")
    c.add_argument("name", help="profile name, e.g. gbt33870")
    c.set_defaults(func=cmd_profiles_show)
    c = pr_sub.add_parser("assign", help="judge a unit's bundles by a profile",
                          description="Judge a unit's future bundles by the named profile (logged in the audit log).")
    c.add_argument("unit", help="the unit (全宗/单位)")
    c.add_argument("name", help="profile name")
    c.set_defaults(func=cmd_profiles_assign)
    c = pr_sub.add_parser("default", help="set the profile for units without one",
                          description="Judge units without an assignment by the named profile (logged in the audit log).")
    c.add_argument("name", help="profile name")
    c.set_defaults(func=cmd_profiles_default)
    pr.set_defaults(func=lambda cfg, args: pr.print_help() or 2)

    q = sub.add_parser("quarantine", help="bundles refused at commit, with every reason",
                       description="Bundles that broke their unit's standards profile or conflicted with the "
                                   "catalogue: kept, not catalogued, with every reason.")
    q_sub = q.add_subparsers(title="quarantine commands", metavar="COMMAND", dest="subcommand")
    c = q_sub.add_parser("ls", help="list quarantined bundles", description="List quarantined bundles, newest first.")
    add_json(c)
    c.set_defaults(func=cmd_quarantine_ls)
    c = q_sub.add_parser("show", help="every reason one bundle was quarantined",
                         description="Show a quarantined bundle and every rule it broke, page by page.")
    c.add_argument("bundle", help="bundle id, or at least its first 6 hex digits")
    add_json(c, "JSON")
    c.set_defaults(func=cmd_quarantine_show)
    q.set_defaults(func=lambda cfg, args: q.print_help() or 2)

    a = sub.add_parser("audit", help="the tamper-evident audit log",
                       description="The append-only Merkle-tree log of ingests, quarantines, registrations "
                                   "and profile changes, with signed checkpoints.")
    a_sub = a.add_subparsers(title="audit commands", metavar="COMMAND", dest="subcommand")
    c = a_sub.add_parser("verify", help="recompute the log and check every signed checkpoint",
                         description="Recompute the Merkle tree from the stored entries and check every signed "
                                     "checkpoint (the log's own, every receipt's, and any given); exit 1 on a problem.")
    c.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                   help="a checkpoint a station or auditor kept (JSON, as 'audit checkpoint' prints); repeatable")
    c.set_defaults(func=cmd_audit_verify)
    c = a_sub.add_parser("ls", help="list audit entries", description="List audit entries in log order.")
    c.add_argument("--from", dest="start", type=int, default=0, help="first entry index (default 0)")
    c.add_argument("--limit", type=int, default=None, help="at most this many entries")
    add_json(c, "the entries as JSON lines")
    c.set_defaults(func=cmd_audit_ls)
    c = a_sub.add_parser("checkpoint", help="print the latest signed checkpoint",
                         description="Print the latest signed checkpoint as JSON, for a witness to keep.")
    c.set_defaults(func=cmd_audit_checkpoint)
    a.set_defaults(func=lambda cfg, args: a.print_help() or 2)


def cmd_init(cfg, args) -> int:
    archive = open_archive(cfg)
    print(f"central archive at {cfg.home}")
    print(f"key fingerprint {keys.fingerprint(archive.public_key)}")
    archive.close()
    return 0


@as_person("archive.info")
def cmd_info(archive, who, args) -> int:
    counts = listing.totals(archive)
    home = archive.config.home
    print(f"home            {home}")
    print(f"key fingerprint {keys.fingerprint(archive.public_key)}")
    print(f"tls certificate {home / 'tls' / 'cert.pem'} (sha256 {archive.tls.cert_sha256.hex()})")
    for name, value in counts.items():
        print(f"{name:<15} {value}")
    return 0


@as_person("station.manage")
def cmd_stations_add(archive, who, args) -> int:
    row = stations.add(archive, args.station_id, args.key, args.unit, by=who.label)
    print(f"station {row['id']} registered for unit {row['unit']} "
          f"(key {keys.fingerprint(bytes(row['public_key']))})")
    return 0


@as_person("station.read")
def cmd_stations_pending(archive, who, args) -> int:
    rows = stations.pending(archive)
    if rows:
        # What a station sent is shown cut short and with control characters escaped: it is a stranger's text.
        _table([{k: _escaped(v) for k, v in row.items()} for row in rows],
               ["code", "station_id", "hostname", "requested_at", "fingerprint"])
        more = stations.pending_count(archive) - len(rows)
        if more > 0:
            print(f"… and {more} more (the oldest are shown; approve these, or let them expire)")
    else:
        print("no station is waiting for enrolment")
    return 0


def _escaped(value) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(value))


@as_person("station.manage")
def cmd_stations_approve(archive, who, args) -> int:
    row = stations.approve(archive, args.code, args.unit, by=who.label)
    print(f"station {row['id']} enrolled into unit {row['unit']}")
    return 0


@as_person(None)
def cmd_stations_revoke(archive, who, args) -> int:
    change = changes.propose(archive, who, "revoke_station", {"station_id": args.station_id}, args.reason)
    print(f"station {args.station_id} suspended: its calls are refused from now on. Revocation #{change['id']} "
          f"becomes final when a second administrator runs 'quire-central changes approve {change['id']}'")
    return 0


@as_person("station.read")
def cmd_stations_ls(archive, who, args) -> int:
    rows = stations.listing(archive)
    if args.json:
        _json_lines(rows)
    else:
        _table(rows, ["id", "unit", "added_at", "revoked_at", "fingerprint"])
    return 0


@as_person(None)
def cmd_ls(archive, who, args) -> int:
    if args.archive_no:
        guard(archive, who, "catalogue.read", unit=dossier_unit(archive, args.archive_no), archive_no=args.archive_no)
    else:
        guard(archive, who, "catalogue.read")
    if args.item:
        rows = listing.pages(archive, args.archive_no, args.item)
        columns = ["n", "sha256", "bytes", "media_type", "width_px", "height_px", "dpi", "colour"]
    elif args.archive_no:
        rows = listing.sort_items(listing.materials(archive, args.archive_no))
        columns = ["item", "title", "page_count", "station_id", "catalogued_at"]
    else:
        rows = listing.dossiers(archive, who)
        columns = ["archive_no", "name", "kind", "unit", "materials", "pages", "bytes", "state"]
    if args.json:
        _json_lines(rows)
    elif rows:
        _table(rows, columns)
    else:
        print("nothing catalogued" + (f" for {args.archive_no}" if args.archive_no else ""))
        return 1 if args.archive_no else 0
    return 0


@as_person("archive.verify")
def cmd_verify(archive, who, args) -> int:
    return print_verify_report(verify(archive, full=not args.quick), args.quick)


@as_person("archive.maintain")
def cmd_sm3_backfill(archive, who, args) -> int:
    done = sm3.backfill(archive, by=who.label)
    print(f"SM3 recorded for {done['blobs']} blob(s); every stored blob now has one")
    return 0


def cmd_backup(cfg, args) -> int:
    repo = _backup_repo(cfg, args)
    secret = backup.password_file(args.password_file, cfg.backup_password_file)
    archive = open_archive(cfg, create=False)
    try:
        snap = backup.backup(archive, repo, secret, init=args.init)
    finally:
        archive.close()
    print(f"snapshot {snap.id} saved to {backup.shown(repo)}: catalogue with {snap.blobs} blob(s) and "
          f"{snap.audit_size} audit entries, {snap.files} file(s) read, {snap.bytes_added} new bytes stored",
          flush=True)
    if args.check:
        archive = open_archive(cfg, create=False)
        try:
            part = backup.check(archive, repo, secret, cfg.scrub_period_days)
        finally:
            archive.close()
        print(f"repository {backup.shown(repo)} checked, data part {part} re-read: OK")
    return 0


def cmd_restore(cfg, args) -> int:
    repo = _backup_repo(cfg, args)
    secret = backup.password_file(args.password_file, cfg.backup_password_file)
    index = backup.restore(repo, secret, Path(args.to), args.snapshot)
    print(f"restored the archive {index['archive_key']} as backed up at {index['at']} ({index['blobs']} blob(s), "
          f"{index['audit_size']} audit entries) into {args.to}")
    print(f"check it: quire-central --home {args.to} verify; quire-central --home {args.to} audit verify")
    return 0


def _backup_repo(cfg, args) -> str:
    repo = args.repo or cfg.backup_repo
    if not repo:
        raise CentralError("no backup repository: give --repo REPO or set backup_repo in central.toml")
    return repo


def cmd_scrub(cfg, args) -> int:
    archive = open_archive(cfg, create=False)
    try:
        if args.report:
            return _scrub_report(archive)
        report = scrub.scrub(archive, cfg.scrub_period_days, everything=args.all)
    finally:
        archive.close()
    for damage in report.damaged:
        print(damage)
    line = report.status_line()
    print(line, flush=True)
    Notifier.from_env().status(line)
    return 0 if report.ok else 1


def _scrub_report(archive) -> int:
    state = stats.fixity_alarm(archive)
    for d in state["damaged"]:
        print(f"DAMAGED blob {d['sha256']}: {d['problem']}; holds {'; '.join(d['used_by']) or 'no catalogued page'}")
    print(f"last scrub {state['last_scrub'] or 'never'}; cycle of {state['period_days'] or '-'} days started "
          f"{state['cycle_started'] or '-'}, {state['left_in_cycle'] if state['left_in_cycle'] is not None else '-'} "
          f"blob(s) left; last backup {state['last_backup'] or 'never'} (snapshot {state['snapshot'] or '-'})")
    rows = stats.fixity(archive)
    if rows:
        _table(rows, ["day", "scrub_runs", "blobs", "bytes", "damaged", "restored", "backups", "snapshot"])
    return 1 if state["damaged"] else 0


@as_person(None)
def cmd_export(archive, who, args) -> int:
    index = export.export(archive, who, args.archive_no, args.item, Path(args.out), args.consultation, args.reason,
                          args.transfer)
    pages = sum(m["page_count"] for m in index["materials"])
    print(f"exported {args.archive_no}: {len(index['materials'])} material(s), {pages} page(s) to {args.out}")
    print(f"signed by archive key {index['archive']}; check with 'quire-central verify-export {args.out}'")
    return 0


@as_person(None)
def cmd_seal(archive, who, args) -> int:
    change = changes.propose(archive, who, args.kind, {"archive_no": args.archive_no}, args.reason)
    print(f"change #{change['id']} proposed: {args.kind.replace('_', ' ')} {args.archive_no}; it takes effect when a "
          f"second archivist runs 'quire-central changes approve {change['id']}'")
    return 0


@as_person(None)
def cmd_transfer(archive, who, args) -> int:
    change = changes.propose(archive, who, "transfer_dossier", {"archive_no": args.archive_no, "to": args.to},
                             args.reason)
    print(f"change #{change['id']} proposed: transfer {args.archive_no} to {args.to}; it takes effect when a second "
          f"archivist runs 'quire-central changes approve {change['id']}', then 'export {args.archive_no} --transfer'")
    return 0


@as_person(None)
def cmd_import(archive, who, args) -> int:
    index = transfer.import_package(archive, who, Path(args.bag), args.unit, args.from_key)
    pages = sum(m["page_count"] for m in index["materials"])
    print(f"imported {index['archive_no']} into unit {args.unit}: {len(index['materials'])} material(s), {pages} "
          f"page(s), transferred to {index['transfer']['to']} by archive {args.from_key}")
    return 0


def cmd_verify_export(cfg, args) -> int:
    report = export_verify.verify_export(Path(args.bag), args.archive_key)
    for problem in report.problems:
        print(problem)
    verdict = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
    what = (f"transfer package of {report.archive_no} to {report.transfer_to}" if report.transfer_to
            else f"export of {report.archive_no}")
    print(f"{what}: {report.materials} material(s), {report.pages} page(s), archive key {report.archive_key} — "
          f"{verdict}")
    if report.ok and not args.archive_key:
        print("compare the archive key with the fingerprint the archive publishes, or pass --archive-key")
    return 0 if report.ok else 1


@as_person("profile.read")
def cmd_profiles_ls(archive, who, args) -> int:
    home = archive.config.home
    default, units = profile.default_name(archive), profile.assignments(archive)
    rows = []
    for name, path in profile.available(home).items():
        p = profile.load(name, home)
        rows.append({"name": name, "version": p.version, "default": "yes" if name == default else "",
                     "units": ", ".join(u["unit"] for u in units if u["profile"] == name),
                     "source": "shipped" if path.parent == profile.SHIPPED_DIR else str(path), "title": p.title})
    if args.json:
        _json_lines(rows)
    else:
        _table(rows, ["name", "version", "default", "units", "source", "title"])
    return 0


@as_person("profile.read")
def cmd_profiles_show(archive, who, args) -> int:
    p = profile.load(args.name, archive.config.home)
    for name, value in p.model_dump().items():
        print(f"{name:<28} {', '.join(value) if isinstance(value, tuple) else value}")
    return 0


@as_person("profile.manage")
def cmd_profiles_assign(archive, who, args) -> int:
    chosen = profile.assign(archive, args.unit, args.name)
    print(f"unit {args.unit} is judged by profile {chosen.label} from now on")
    return 0


@as_person("profile.manage")
def cmd_profiles_default(archive, who, args) -> int:
    chosen = profile.set_default(archive, args.name)
    print(f"units without their own profile are judged by {chosen.label} from now on")
    return 0


@as_person(None)
def cmd_quarantine_ls(archive, who, args) -> int:
    rows = quarantine.listing(archive, who)
    if args.json:
        _json_lines(rows)
    elif rows:
        for row in rows:
            row["bundle"] = row["bundle_id"][:12]
        _table(rows, ["bundle", "station_id", "unit", "archive_no", "item", "profile", "reasons", "rules",
                      "quarantined_at"])
    else:
        print("no bundle is quarantined")
    return 0


@as_person(None)
def cmd_quarantine_show(archive, who, args) -> int:
    row = quarantine.show(archive, who, args.bundle)
    if args.json:
        print(json.dumps(row, ensure_ascii=False))
        return 0
    for key in ("bundle_id", "station_id", "unit", "archive_no", "item", "title", "pages", "operator",
                "profile", "profile_version", "profile_sha256", "quarantined_at"):
        print(f"{key:<16} {'' if row[key] is None else row[key]}")
    print(f"reasons ({len(row['reasons'])}):")
    for r in row["reasons"]:
        where = f" page {r['page']}" if r.get("page") is not None else ""
        print(f"  {r['severity']:<6} {r['rule']}{where}: {r['message']}")
    return 0


@as_person("audit.read")
def cmd_audit_verify(archive, who, args) -> int:
    witnesses = []
    for path in args.checkpoint:
        try:
            witnesses.append((f"checkpoint file {path}", checkpoint_format.from_json(json.loads(open(path).read()))))
        except (OSError, ValueError, ContractError) as exc:
            raise CentralError(f"{path}: not a checkpoint 'quire-central audit checkpoint' printed ({exc})") from None
    report = audit.verify_log(archive, witnesses)
    for problem in report.problems:
        print(problem)
    verdict = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
    print(f"audit log: {report.entries} entries, {report.checkpoints} checkpoints, "
          f"root {report.root.hex()} — {verdict}")
    return 0 if report.ok else 1


@as_person("audit.read")  # the log names who read what
def cmd_audit_ls(archive, who, args) -> int:
    rows = audit.entries(archive, args.start, args.limit)
    if args.json:
        _json_lines(rows)
        return 0
    if not rows:
        print("no audit entries" + (f" from #{args.start}" if args.start else ""))
        return 0
    for row in rows:
        row["subject"] = row.get("bundle_id", "")[:12] or row.get("station_id") or row.get("unit") or ""
    _table(rows, ["idx", "at", "event", "by", "subject", "archive_no", "item"])
    return 0


@as_person("audit.read")
def cmd_audit_checkpoint(archive, who, args) -> int:
    cp = audit.latest_checkpoint(archive)
    if cp is None:
        raise CentralError("the audit log is empty; nothing has been signed yet")
    print(json.dumps(cp.to_json(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
