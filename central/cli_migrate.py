"""quire-central migrate: move a stopped SQLite + disk archive onto PostgreSQL and an S3-compatible bucket."""

import argparse
import os
from pathlib import Path

from pydantic import ValidationError

from . import config, migrate, replica
from .archive import open_blobs, s3_store
from .errors import CentralError, ConfigError
from .store.catalogue import CatalogueStore
from .store.catalogues import is_postgres_url, open_catalogue

HELP = """\
Copy this archive (its SQLite catalogue and its page files) into another catalogue and blob store, then
check the copy: every table's row count, every blob's SHA-256 read back from the target, and the audit
log's tree size and root on both sides; finally print what to switch in central.toml.

The source is opened read-only and is never changed. A run cut short can be run again: rows and blobs
already there are kept (a blob is not sent again), and the check covers everything once more.

What it does not do: it is not live — stop every 'serve' of this home first (it refuses while a process
holds the catalogue open); it switches nothing (edit central.toml yourself once it says OK) and deletes
nothing; it copies neither keys/, tls/, profiles/ nor central.toml (every archive process needs them:
copy the home's folders to each machine), nor unfinished uploads (stations send those again), nor the
replay guard (nonces.db); it writes no audit entry on either side (the target's log must be the
source's, byte for byte); it refuses an off-site copy's home (migrate the primary) and a target that
holds another archive. Off-site copies made by 'replicate' need a SQLite catalogue: on PostgreSQL use
the database's own replication and the bucket's."""


def add_commands(sub) -> None:
    """Register migrate."""
    c = sub.add_parser("migrate", help="copy a stopped archive onto PostgreSQL and an S3 bucket, and check it",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--to", required=True, metavar="CATALOGUE",
                   help="the target catalogue: postgresql://USER@HOST/DBNAME (password in libpq's 0600 passfile, "
                        "never in the URL) or the path of a new SQLite file; it must be empty or hold an earlier, "
                        "cut-short copy of this archive")
    c.add_argument("--blobs", metavar="s3://BUCKET/PREFIX",
                   help="copy the page files into this bucket and prefix (default: they stay where they are)")
    c.add_argument("--blobs-credentials", metavar="FILE",
                   help="the object store's endpoint and keys, a TOML file of mode 0600 as blobs_credentials in "
                        "central.toml takes (default the AWS_* environment)")
    c.set_defaults(func=cmd_migrate)


def open_target(url: str, source: Path) -> CatalogueStore:
    """The target catalogue named by ``--to`` (its migrations applied, as a serve process would)."""
    if is_postgres_url(url):
        try:
            config.CentralSettings(catalogue=url)   # the same check central.toml's catalogue gets
        except ValidationError as exc:
            raise ConfigError(f"--to: {exc.errors()[0]['msg']}; nothing was copied") from None
        return open_catalogue(url, pool_size=2)
    path = Path(url)
    if path.resolve() == source.resolve():
        raise ConfigError(f"--to {url} is this archive's own catalogue; give a new file or a postgresql:// URL "
                          "(nothing was copied)")
    if not path.parent.is_dir():
        raise ConfigError(f"--to {url}: folder {path.parent} does not exist; create it first")
    return open_catalogue(path)


def cmd_migrate(cfg, args) -> int:
    if replica.is_replica(cfg):
        raise CentralError("this home is an off-site copy: migrate the primary, then set up its copy again")
    if cfg.catalogue:
        raise ConfigError(f"this archive's catalogue is {_shown(cfg.catalogue)} already; migrate moves an archive "
                          "off its SQLite file (copy a PostgreSQL database with pg_dump / pg_restore)")
    if args.blobs and not args.blobs.startswith("s3://"):
        raise ConfigError(f"--blobs {args.blobs}: give s3://BUCKET/PREFIX (page files move to an S3-compatible "
                          "bucket; leave --blobs out to keep them where they are)")
    migrate.refuse_if_served(cfg)
    src_blobs = open_blobs(cfg)
    dst_blobs = target = None
    try:
        dst_blobs = s3_store(args.blobs, args.blobs_credentials) if args.blobs else None
        target = open_target(args.to, cfg.db_path)
        report = migrate.migrate(cfg, target, _shown(args.to), src_blobs, dst_blobs,
                                 progress=lambda line: print(line, flush=True))
    finally:
        for opened in (target, dst_blobs, src_blobs):
            if opened is not None:
                opened.close()
    for problem in report.problems:
        print(problem)
    for table in report.tables:
        print(f"  {table.name:<22} {table.source:>9} source {table.target:>9} target")
    print(f"blobs: {report.blobs} checked by SHA-256 in the {'target' if args.blobs else 'blob store'}, "
          f"{report.blobs_copied} sent ({report.bytes_copied} bytes)")
    print(f"audit log: {report.audit_size} entries, root {report.audit_root.hex()} in the target")
    if not report.ok:
        print(f"{len(report.problems)} PROBLEM(S): do not switch; fix them and run migrate again")
        return 1
    print(f"OK. Switch central.toml ({cfg.home / 'central.toml'}) of every archive process to:")
    if is_postgres_url(args.to):
        print(f'  catalogue = "{args.to}"')
    else:
        print(f'  catalogue = ""   (and {args.to} as central.db of the home that serves)')
    if args.blobs:
        print(f'  blobs = "{args.blobs}"')
        if args.blobs_credentials:
            print(f'  blobs_credentials = "{os.path.abspath(args.blobs_credentials)}"')
    print(f"then start serve. {cfg.db_path} and the old page files are untouched: keep them until "
          "'quire-central verify' and 'audit verify' pass on the new archive.")
    return 0


def _shown(url: str) -> str:
    return url.split("?", 1)[0]
