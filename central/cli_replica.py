"""quire-central's off-site copy commands: replica init/add/status, replicate, promote."""

import json
from pathlib import Path

from . import replica, replicate
from .archive import open_archive
from .cli_args import add_json, add_pin, add_quick, print_verify_report
from .cli_people import as_person


def add_commands(sub) -> None:
    """Register the replica group, replicate and promote."""
    g = sub.add_parser("replica", help="the off-site copy (异地备份): set it up and see how far behind it is",
                       description="An off-site copy is a second Quire archive that keeps a verified copy of "
                                   "everything: bundles, catalogue, version history and the audit log, which it "
                                   "proves is the primary's own log. The primary pushes to it ('replicate').")
    inner = g.add_subparsers(title="replica commands", metavar="COMMAND", dest="subcommand")
    g.set_defaults(func=lambda cfg, args: g.print_help() or 2)
    c = inner.add_parser("init", help="on the copy: make this (empty) home the copy of a primary",
                         description="Make this empty archive home the off-site copy of the primary at HOST:PORT. "
                                     "FINGERPRINT is the primary's key fingerprint, read from 'quire-central info' "
                                     "on the primary (never from the network). Then run 'serve' here.")
    c.add_argument("--primary", required=True, metavar="HOST:PORT", help="the primary archive's address")
    add_pin(c, "the primary's")
    c.set_defaults(func=cmd_replica_init)
    c = inner.add_parser("add", help="on the primary: push to the copy at HOST:PORT from now on",
                         description="Record the off-site copy this archive pushes to. FINGERPRINT is the copy's "
                                     "key fingerprint, printed by 'replica init' on the copy.")
    c.add_argument("--copy", required=True, metavar="HOST:PORT", help="the copy's address")
    add_pin(c, "the copy's")
    c.set_defaults(func=cmd_replica_add)
    c = inner.add_parser("status", help="how far behind the copy is (on the primary), or what it holds (on the copy)",
                         description="On the primary: entries, bundles and blobs the copy lacks, its last contact "
                                     "and last error; exits 1 when the copy is behind by more than --max-entries or "
                                     "was last reached longer ago than --max-age-s, or the last push failed (a "
                                     "doctor-style check for monitoring). On the copy: the primary's log it holds.")
    add_json(c, "one JSON object")
    c.add_argument("--max-entries", type=int, default=0, help="audit entries the copy may lag (default 0)")
    c.add_argument("--max-age-s", type=float, default=3600.0, help="how old the last contact may be (default 3600)")
    c.set_defaults(func=cmd_replica_status)

    c = inner.add_parser("verify", help="on the copy: re-check everything it holds under the primary's key",
                         description="The copy's own 'verify': every blob re-hashed (SHA-256 and SM3), every "
                                     "signature, the catalogue against the audit log and the log against every "
                                     "checkpoint, all under the primary's key; --quick checks sizes and counts.")
    add_quick(c)
    c.set_defaults(func=cmd_replica_verify)

    c = sub.add_parser("replicate", help="push everything new to the off-site copy, resuming a broken transfer",
                       description="Send the copy a consistent snapshot of the catalogue and every blob it lacks "
                                   "over pinned TLS, with the stations' resumable upload; the copy checks it all "
                                   "(signatures, hashes, standards, the audit log's consistency) before adopting "
                                   "it. Run by quire-central-replicate.timer; exits 75 while the copy is "
                                   "unreachable, 65 when it refuses.")
    c.add_argument("--retry-s", type=float, default=300.0, help="keep retrying a broken link this long (default 300)")
    c.add_argument("--copy", metavar="HOST:PORT", help="reach the copy at this address this time")
    c.set_defaults(func=cmd_replicate)

    c = sub.add_parser("promote", help="on the copy: make it the primary (after the primary is lost)",
                       description="Turn this off-site copy into the primary. DIR holds the primary's escrowed "
                                   "identity: keys/central.key and tls/key.pem, tls/cert.pem (copied from the "
                                   "primary's home when the copy was set up, kept offline). The copy is verified "
                                   "under that key first; stations pinned to the primary then sync here unchanged.")
    c.add_argument("--identity", required=True, metavar="DIR", help="the primary's escrowed keys/ and tls/")
    c.set_defaults(func=cmd_promote)


def cmd_replica_init(cfg, args) -> int:
    state = replica.init(cfg, args.primary, args.pin)
    print(f"{cfg.home} is now the off-site copy of {state['primary_fingerprint']} at {state['primary_address']}")
    print(f"this copy's key fingerprint {state['copy_fingerprint']}")
    print(f"next: run 'quire-central serve' here, and on the primary 'quire-central replica add --copy HOST:PORT "
          f"--pin {state['copy_fingerprint']}'")
    return 0


@as_person("archive.maintain")
def cmd_replica_add(archive, who, args) -> int:
    state = replicate.add_copy(archive, args.copy, args.pin, by=who.label)
    print(f"this archive now pushes to the copy {state['copy_fingerprint']} at {state['copy_address']}; run "
          "'quire-central replicate' (or enable quire-central-replicate.timer)")
    return 0


def cmd_replica_status(cfg, args) -> int:
    if replica.is_replica(cfg):
        state = replica.load_state(cfg)
        cp = replica.held_checkpoint(state)
        out = {"role": "copy", "primary": state["primary_fingerprint"], "primary_address": state["primary_address"],
               "entries": cp.tree_size if cp else 0, "root": cp.body["root_hash"] if cp else "",
               "bundles": state["bundles"], "blobs": state["blobs"], "replicated_at": state["applied_at"]}
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        else:
            print(f"off-site copy of {out['primary']} ({out['primary_address']}): {out['entries']} audit entries "
                  f"(root {out['root'] or '-'}), {out['bundles']} bundles, {out['blobs']} blobs, last adopted "
                  f"{out['replicated_at'] or 'never'}")
        return 0
    archive = open_archive(cfg, create=False)
    try:
        behind = replicate.lag(archive)
    finally:
        archive.close()
    if behind is None:
        print("this archive has no off-site copy ('quire-central replica add --copy HOST:PORT --pin FINGERPRINT')")
        return 1
    problems = replicate.health_problems(behind, args.max_entries, args.max_age_s)
    if args.json:
        print(json.dumps(dict(behind, role="primary", problems=problems), ensure_ascii=False))
    else:
        print(f"copy {behind['copy_fingerprint']} at {behind['copy']}: {behind['entries_behind']} audit entries, "
              f"{behind['bundles_behind']} bundles, {behind['blobs_behind']} blobs behind; last contact "
              f"{behind['last_contact'] or 'never'}, holds the log up to {behind['copy_entries']} entries")
        for problem in problems:
            print(f"PROBLEM: {problem}")
    return 1 if problems else 0


def cmd_replica_verify(cfg, args) -> int:
    return print_verify_report(replica.verify_copy(cfg, full=not args.quick), args.quick, "off-site copy, ")


def cmd_replicate(cfg, args) -> int:
    archive = open_archive(cfg, create=False)
    try:
        report = replicate.push(archive, retry_span_s=args.retry_s, address=args.copy)
    finally:
        archive.close()
    ack = report.ack
    if report.up_to_date:
        print(f"the copy is up to date ({ack.get('tree_size', '?')} audit entries)")
    else:
        print(f"the copy adopted {ack['tree_size']} audit entries (root {ack['root_hash']}), {ack['bundles']} "
              f"bundles; {report.blobs_sent} blob(s), {report.bytes_sent} bytes sent, {report.retries} retries")
    return 0


def cmd_promote(cfg, args) -> int:
    done = replica.promote(cfg, Path(args.identity))
    print(f"this archive is now the primary {done['fingerprint']}: its log holds {done['tree_size']} entries "
          f"(replicated {done['replicated_at'] or 'never'}, then the promotion entry)")
    print("next: start 'quire-central serve' here and point the stations at it "
          "('quire-station sync --central HOST:PORT', or 'central' in station.toml): they find the key "
          "and TLS certificate they pinned")
    return 0
