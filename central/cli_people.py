"""quire-central command groups for people: users, consultations, four-eyes changes, QC, search.

Each command acts as the user whose token is given (--token-file or $QUIRE_TOKEN); while an
archive has no users yet, the operating-system user on the archive host acts as administrator.
"""

import functools
import getpass
import os
import sys
from pathlib import Path

from . import access, audit, changes, dossiers, gate, qc, users
from .archive import open_archive
from .cli_args import add_json
from .errors import CentralError
from .permissions import ROLES, local_operator, scoped_units
from .printing import json_lines, table


def actor(archive, args):
    """The person running the command: the token's user, logged with the command (a missing or wrong
    token is refused and logged); while the archive has no users, the operating-system user."""
    token = None
    if args.token_file:
        path = Path(args.token_file)
        if path.stat().st_mode & 0o077:
            raise CentralError(f"{path} is readable by others; run: chmod 600 {path}")
        token = path.read_text().strip()
    token = token or os.environ.get("QUIRE_TOKEN")
    if not token and users.count(archive) == 0:
        return local_operator(getpass.getuser())
    who = users.authenticate(archive, token, by=audit.local_user())
    command = " ".join(word for word in (args.command, args.subcommand) if word)
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "login", who.label, {"user": who.id, "via": "cli", "command": command},
                     by=who.label)
    return who


def add_commands(sub) -> None:
    """Register the users, consult, changes, materials, dossiers, qc and search groups."""
    g = _group(sub, "users", "people who use the archive, their roles and tokens",
               "Add users with roles (separation of duties: admin, security_officer and auditor are each a "
               "person's only role) and issue tokens, which are stored only as hashes.")
    c = g.add_parser("add", help="add a user and print their token once",
                     description="Add a user; the token is printed once and only its hash is kept. The first "
                                 "user of an archive is added by the host's administrator without a token.")
    c.add_argument("user_id", help="short id, lower-case letters, digits, '-'")
    c.add_argument("--name", required=True, help="full name")
    c.add_argument("--role", action="append", required=True, choices=sorted(ROLES), help="role (repeatable)")
    c.add_argument("--unit", action="append", required=True, help="unit the user works for (repeatable; '*' all)")
    c.add_argument("--own-dossier", help="archive number of the user's own dossier (never consultable by them)")
    c.set_defaults(func=cmd_users_add)
    c = g.add_parser("relate", help="record a relative's dossier the user may never consult (回避)",
                     description="Record that a dossier belongs to a relative of the user.")
    c.add_argument("user_id", help="the user's id")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("--relation", required=True, help="e.g. spouse, parent, child, sibling")
    c.set_defaults(func=cmd_users_relate)
    c = g.add_parser("token", help="issue a new token (the old one stops working)",
                     description="Replace a user's token and print the new one once.")
    c.add_argument("user_id", help="the user's id")
    c.set_defaults(func=cmd_users_token)
    c = g.add_parser("password", help="set a user's web console password (changed at their first sign-in)",
                     description="Set the password a user signs in to the web console with (argon2id, at least "
                                 f"{users.PASSWORD_MIN_CHARS} characters), typed twice at the prompt or given as "
                                 "one line on standard input; the user must choose their own at the first sign-in, "
                                 "and their open console sessions end.")
    c.add_argument("user_id", help="the user's id")
    c.set_defaults(func=cmd_users_password)
    c = g.add_parser("disable", help="disable a user", description="Disable a user; their token is refused.")
    c.add_argument("user_id", help="the user's id")
    c.set_defaults(func=cmd_users_disable)
    c = g.add_parser("ls", help="list users", description="List users, their roles and units.")
    add_json(c)
    c.set_defaults(func=cmd_users_ls)

    g = _group(sub, "consult", "consultation (查阅) requests: file, approve, refuse, list",
               "Readers file requests (dossier, purpose, days); a security officer over the dossier's unit "
               "decides. Viewing and exporting are approved separately; grants expire by themselves.")
    c = g.add_parser("request", help="file a consultation request", description="File a consultation request.")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("--purpose", required=True, help="why the dossier is consulted (recorded)")
    c.add_argument("--days", type=int, default=7, help="how long the grant lasts (default 7)")
    c.add_argument("--export", action="store_true", help="also ask to export/copy pages")
    c.set_defaults(func=cmd_consult_request)
    for verb, approve in (("approve", True), ("refuse", False)):
        c = g.add_parser(verb, help=f"{verb} a request (viewing, or --export)",
                         description=f"{verb.capitalize()} viewing, or with --export the export request.")
        c.add_argument("id", type=int, help="its number, from the ls command")
        c.add_argument("--export", action="store_true", help="decide the export request instead")
        c.add_argument("--reason", default="", help="recorded with the decision")
        c.set_defaults(func=cmd_consult_decide, approve=approve)
    c = g.add_parser("ls", help="list requests", description="A reader's own requests; a security officer's "
                                                              "requests on dossiers of their units.")
    add_json(c)
    c.set_defaults(func=cmd_consult_ls)

    g = _group(sub, "changes", "four-eyes (双人复核) changes: list, approve, refuse",
               "Replacing or withdrawing a material, editing a dossier's identity and revoking a station are "
               "proposed by one person and take effect when a second one approves.")
    c = g.add_parser("ls", help="list changes", description="List changes, waiting ones first with --waiting.")
    c.add_argument("--waiting", action="store_true", help="only changes waiting for a decision")
    add_json(c)
    c.set_defaults(func=cmd_changes_ls)
    for verb, approve in (("approve", True), ("refuse", False)):
        c = g.add_parser(verb, help=f"{verb} a change proposed by someone else",
                         description=f"{verb.capitalize()} a waiting change; the proposer cannot decide it.")
        c.add_argument("id", type=int, help="its number, from the ls command")
        c.add_argument("--note", default="", help="recorded with the decision")
        c.set_defaults(func=cmd_changes_decide, approve=approve)

    g = _group(sub, "materials", "replace or withdraw a material (four eyes); its version history",
               "Propose replacing a material by a rescanned bundle (held in quarantine as 'already "
               "catalogued'), or withdrawing it; every earlier version stays, browsable with 'history'.")
    c = g.add_parser("replace", help="propose replacing a material by a quarantined bundle",
                     description="Propose the replacement; a second archivist approves with 'changes approve'.")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("item", help="material item number, e.g. 4-1-2")
    c.add_argument("--bundle", required=True, help="the replacement bundle id (prefix) from 'quarantine ls'")
    c.add_argument("--reason", required=True, help="why (kept with the version for good)")
    c.set_defaults(func=cmd_materials_change, kind="replace_material")
    c = g.add_parser("withdraw", help="propose withdrawing a material",
                     description="Propose the withdrawal; a second archivist approves with 'changes approve'.")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("item", help="material item number, e.g. 4-1-2")
    c.add_argument("--reason", required=True, help="why (kept with the version for good)")
    c.set_defaults(func=cmd_materials_change, kind="withdraw_material", bundle=None)
    c = g.add_parser("history", help="every version of a material with who/when/why",
                     description="List every version of a material, oldest first.")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("item", help="material item number, e.g. 4-1-2")
    add_json(c)
    c.set_defaults(func=cmd_materials_history)

    g = _group(sub, "dossiers", "edit a dossier's identity fields (four eyes)",
               "Propose changes to a dossier's name, sex, birth date, post or kind.")
    c = g.add_parser("edit", help="propose an identity change",
                     description="Propose the change; a second archivist approves with 'changes approve'.")
    c.add_argument("archive_no", help="dossier archive number (档号)")
    c.add_argument("--set", action="append", required=True, metavar="FIELD=VALUE",
                   help=f"field to change: {', '.join(changes.IDENTITY_FIELDS)} (repeatable)")
    c.add_argument("--reason", required=True, help="why (kept with the change)")
    c.set_defaults(func=cmd_dossiers_edit)

    c = sub.add_parser("search", help="find dossiers by archive number, name, category or date",
                       description="Search the catalogue; every filter given must match.")
    c.add_argument("--archive-no", help="archive number prefix")
    c.add_argument("--name", help="part of the name")
    c.add_argument("--category", help="category or item, e.g. 4 or 4-1 or 4-1-2")
    c.add_argument("--from", dest="date_from", help="materials formed on or after (YYYY-MM-DD)")
    c.add_argument("--to", dest="date_to", help="materials formed on or before (YYYY-MM-DD)")
    c.add_argument("--unit", help="only this unit")
    add_json(c)
    c.set_defaults(func=cmd_search)

    g = _group(sub, "qc", "QC acceptance (数据验收) of uploaded batches",
               "Sample a committed batch (≥ max(5 %, 10 pages), from the profile), judge each sampled page, "
               "decide: accepted at ≥ 95 % good, else returned and the station asked to rescan.")
    c = g.add_parser("ls", help="batches and their QC state", description="List committed batches with QC state.")
    add_json(c)
    c.set_defaults(func=cmd_qc_ls)
    c = g.add_parser("start", help="draw the random sample of a batch",
                     description="Draw the sample; the inspector cannot be the batch's operator.")
    c.add_argument("bundle", help="bundle id (prefix) from 'qc ls'")
    c.set_defaults(func=cmd_qc_start)
    c = g.add_parser("judge", help="record good/bad for sampled pages",
                     description="Record verdicts: --good N... and/or --bad N --reason WHY.")
    c.add_argument("bundle", help="bundle id (prefix) from 'qc ls'")
    c.add_argument("--good", type=int, nargs="*", default=[], help="sampled pages that are good")
    c.add_argument("--bad", type=int, nargs="*", default=[], help="sampled pages that are not")
    c.add_argument("--reason", default="", help="what is wrong with the --bad pages")
    c.set_defaults(func=cmd_qc_judge)
    c = g.add_parser("decide", help="accept or return the batch",
                     description="Accept at the profile's share of good pages, else return it with a rescan "
                                 "request the station shows in 'quire-station status'.")
    c.add_argument("bundle", help="bundle id (prefix) from 'qc ls'")
    c.set_defaults(func=cmd_qc_decide)


def _group(sub, name: str, help_: str, description: str):
    g = sub.add_parser(name, help=help_, description=description)
    inner = g.add_subparsers(title=f"{name} commands", metavar="COMMAND", dest="subcommand")
    g.set_defaults(func=lambda cfg, args: g.print_help() or 2)
    return inner


def _session(cfg, args):
    archive = open_archive(cfg, create=False)
    try:
        return archive, actor(archive, args)
    except BaseException:
        archive.close()
        raise


def as_person(action: str | None):
    """Run the command as the person running it, after the permission check for ``action`` (None:
    the use case checks it, knowing the unit)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(cfg, args):
            archive, who = _session(cfg, args)
            try:
                if action:
                    gate.guard(archive, who, action)
                return fn(archive, who, args) or 0
            finally:
                archive.close()
        return run
    return wrap


@as_person("user.manage")
def cmd_users_add(archive, who, args):
    token = users.add(archive, args.user_id, args.name, args.role, args.unit, args.own_dossier, by=who.label)
    print(f"user {args.user_id} added ({', '.join(sorted(args.role))}); token, shown once — hand it over "
          f"privately and keep it in a file only they can read (chmod 600):\n{token}")


@as_person("user.manage")
def cmd_users_relate(archive, who, args):
    users.relate(archive, args.user_id, args.archive_no, args.relation, by=who.label)
    print(f"{args.user_id} may never consult dossier {args.archive_no} ({args.relation})")


@as_person("user.manage")
def cmd_users_token(archive, who, args):
    print(users.reissue_token(archive, args.user_id, by=who.label))


@as_person("user.manage")
def cmd_users_password(archive, who, args):
    if sys.stdin.isatty():
        password = getpass.getpass(f"new password for {args.user_id}: ")
        if getpass.getpass("again: ") != password:
            raise CentralError("the two passwords differ; nothing was changed")
    else:
        password = sys.stdin.readline().rstrip("\n")
    users.set_password(archive, args.user_id, password, by=who.label)
    print(f"password of {args.user_id} set; they choose their own at their first sign-in to the web console")


@as_person("user.manage")
def cmd_users_disable(archive, who, args):
    users.disable(archive, args.user_id, by=who.label)
    print(f"user {args.user_id} disabled")


@as_person("user.manage")
def cmd_users_ls(archive, who, args):
    rows = users.listing(archive)
    for r in rows:
        r["roles"], r["units"] = ",".join(r["roles"]), ",".join(r["units"])
    _out(rows, ["id", "name", "roles", "units", "own_archive_no", "disabled_at"], args)


@as_person(None)
def cmd_consult_request(archive, who, args):
    c = access.file_request(archive, who, args.archive_no, args.purpose, args.days, args.export)
    print(f"consultation #{c['id']} of {c['archive_no']} filed for {c['days']} days; waiting for the security officer")


@as_person(None)
def cmd_consult_decide(archive, who, args):
    c = access.decide(archive, who, args.id, args.approve, args.reason, "export" if args.export else "view")
    print(f"consultation #{c['id']}: viewing {c['state']}" + (f" until {c['expires_at']}" if c["expires_at"] else "")
          + f", export {c['export_state']}")


@as_person(None)
def cmd_consult_ls(archive, who, args):
    _out(access.listing(archive, who),
         ["id", "reader", "archive_no", "purpose", "days", "state", "export_state", "expires_at"], args)


@as_person("change.list")
def cmd_changes_ls(archive, who, args):
    _out(changes.listing(archive, who, "proposed" if args.waiting else None),
         ["id", "kind", "subject", "state", "proposed_by", "reason", "decided_by"], args)


@as_person(None)
def cmd_changes_decide(archive, who, args):
    c = changes.decide(archive, who, args.id, args.approve, args.note)
    print(f"change #{c['id']} ({c['kind']} {c['subject']}) {c['state']} by {who.id}")


@as_person(None)
def cmd_materials_change(archive, who, args):
    payload = {"archive_no": args.archive_no, "item": args.item}
    if args.bundle:
        payload["bundle_id"] = args.bundle
    c = changes.propose(archive, who, args.kind, payload, args.reason)
    print(f"change #{c['id']} proposed; a second archivist approves it with "
          f"'quire-central changes approve {c['id']}'")


@as_person(None)
def cmd_materials_history(archive, who, args):
    gate.guard(archive, who, "catalogue.read", unit=gate.dossier_unit(archive, args.archive_no),
                 archive_no=args.archive_no)
    _out(changes.history(archive, args.archive_no, args.item),
         ["version", "bundle_id", "title", "page_count", "catalogued_at", "ended_how", "ended_at", "reason",
          "proposed_by", "decided_by"], args)


@as_person(None)
def cmd_dossiers_edit(archive, who, args):
    fields = {}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CentralError(f"--set {pair!r}: write FIELD=VALUE")
        fields[key.strip()] = value.strip()
    c = changes.propose(archive, who, "edit_dossier", {"archive_no": args.archive_no, "fields": fields}, args.reason)
    print(f"change #{c['id']} proposed; a second archivist approves it with "
          f"'quire-central changes approve {c['id']}'")


@as_person("catalogue.read")
def cmd_search(archive, who, args):
    rows = dossiers.search(archive, args.archive_no, args.name, args.category, args.date_from, args.date_to,
                           args.unit, units=scoped_units(who))
    for r in rows:
        if "matching" in r:
            r["matching"] = ",".join(r["matching"])
    _out(rows, ["archive_no", "name", "sex", "birth_date", "unit", "post", "kind", "materials"]
         + (["matching"] if args.category or args.date_from or args.date_to else []), args)


@as_person("qc.inspect")
def cmd_qc_ls(archive, who, args):
    _out(qc.listing(archive, who), ["bundle_id", "station_id", "unit", "archive_no", "item", "page_count", "qc", "inspector",
                               "good_share"], args)


@as_person(None)
def cmd_qc_start(archive, who, args):
    b = qc.start(archive, who, args.bundle)
    print(f"batch {b['bundle_id'][:12]}: inspect pages {', '.join(map(str, b['sample']))} "
          f"({len(b['sample'])} sampled), then 'quire-central qc judge' and 'qc decide'")


@as_person(None)
def cmd_qc_judge(archive, who, args):
    for n in args.good:
        qc.judge(archive, who, args.bundle, n, True)
    for n in args.bad:
        qc.judge(archive, who, args.bundle, n, False, args.reason)
    b = qc.status(archive, args.bundle)
    print(f"{len(b['judged'])} of {len(b['sample'])} sampled pages judged")


@as_person(None)
def cmd_qc_decide(archive, who, args):
    b = qc.decide(archive, who, args.bundle)
    print(f"batch {b['bundle_id'][:12]} {b['state']}: {b['good_share'] * 100:.1f} % of the sample good"
          + ("; the station was asked to rescan the bad pages" if b["state"] == "returned" else ""))
    return 0 if b["state"] == "accepted" else 3


def _out(rows, columns, args):
    if getattr(args, "json", False):
        json_lines(rows)
    elif rows:
        table(rows, columns)
    else:
        print("none")
