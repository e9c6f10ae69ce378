"""QC acceptance (数据验收): a random sample of each committed batch, judged by an inspector who did
not scan it; a batch below the profile's acceptance share is returned with a rescan request."""

import json
import math
import random
from typing import BinaryIO

from quire.db import utcnow

from . import audit, profile
from .gate import guard, refuse
from .archive import Archive
from .errors import CentralError, UnknownBundle
from .permissions import Actor, scoped_units
from .store import bundles
from .store import qc as store_qc
from .store import stations as store_stations


def sample_size(pages: int, share: float, min_pages: int) -> int:
    """≥ max(share of the pages, min_pages), never more than the batch has."""
    return min(pages, max(math.ceil(pages * share - 1e-9), min_pages))


def start(archive: Archive, actor: Actor, bundle: str, rng: random.Random | None = None) -> dict:
    """Draw the sample for a committed batch and record who inspects it."""
    row = _bundle(archive, bundle)
    manifest = json.loads(row["manifest"])
    unit = store_stations.unit_of(archive.catalogue, row["station_id"])
    guard(archive, actor, "qc.inspect", unit=unit, archive_no=manifest["dossier"]["archive_no"])
    operator = manifest["batch"]["operator"]
    if operator.strip().lower() in {actor.id.lower(), actor.name.strip().lower()}:
        refuse(archive, actor, "qc.inspect", f"{actor.id} scanned batch {row['id'][:12]} (operator {operator!r}); "
               "another inspector must accept it", unit=unit, archive_no=manifest["dossier"]["archive_no"])
    existing = store_qc.get(archive.catalogue, row["id"])
    if existing:
        if existing["inspector"] != actor.id:
            raise CentralError(f"batch {row['id'][:12]} is already being inspected by {existing['inspector']}")
        return status(archive, row["id"])
    rules = profile.for_unit(archive, unit)
    numbers = [p["n"] for p in manifest["pages"]]
    size = sample_size(len(numbers), rules.qc_sample_share, rules.qc_sample_min_pages)
    chosen = sorted((rng or random.SystemRandom()).sample(numbers, size))
    with archive.catalogue.transaction() as db:
        store_qc.start(db, row["id"], row["station_id"], operator, actor.id, json.dumps(chosen), utcnow())
        audit.record(db, archive, "qc.start", row["id"],
                     {"bundle_id": row["id"], "operator": operator, "sample": chosen, "of_pages": len(numbers),
                      "profile": rules.label}, by=actor.label)
    return status(archive, row["id"])


def judge(archive: Archive, actor: Actor, bundle: str, n: int, good: bool, reason: str = "") -> dict:
    """Record the inspector's verdict on one sampled page (a bad page needs a reason)."""
    batch = _own_batch(archive, actor, bundle)
    if batch["state"] != "sampling":
        raise CentralError(f"batch {batch['bundle_id'][:12]} was already {batch['state']}")
    if n not in json.loads(batch["sample"]):
        raise CentralError(f"page {n} is not in the sample {json.loads(batch['sample'])}")
    if not good and not reason.strip():
        raise CentralError("say what is wrong with the page (--reason), e.g. 'cut off at the bottom'")
    with archive.catalogue.transaction() as db:
        store_qc.judge(db, batch["bundle_id"], n, good, reason.strip() or None, utcnow())
    return status(archive, batch["bundle_id"])


def decide(archive: Archive, actor: Actor, bundle: str) -> dict:
    """Accept at ≥ the profile's share of good sampled pages, else return the batch for rescanning."""
    batch = _own_batch(archive, actor, bundle)
    if batch["state"] != "sampling":
        return status(archive, batch["bundle_id"])
    sample = json.loads(batch["sample"])
    verdicts = {r["n"]: r for r in store_qc.judgements(archive.catalogue, batch["bundle_id"])}
    unjudged = [n for n in sample if n not in verdicts]
    if unjudged:
        raise CentralError(f"pages {unjudged} of the sample are not judged yet")
    unit = store_stations.unit_of(archive.catalogue, batch["station_id"])
    rules = profile.for_unit(archive, unit)
    good = sum(verdicts[n]["good"] for n in sample) / len(sample)
    bad = [{"n": n, "reason": verdicts[n]["reason"]} for n in sample if not verdicts[n]["good"]]
    accepted = good >= rules.qc_accept_share - 1e-9
    manifest = json.loads(bundles.manifest(archive.catalogue, batch["bundle_id"]))
    with archive.catalogue.transaction() as db:
        store_qc.decide(db, batch["bundle_id"], "accepted" if accepted else "returned", good, utcnow())
        audit.record(db, archive, "qc.accept" if accepted else "qc.return", batch["bundle_id"],
                     {"bundle_id": batch["bundle_id"], "good_share": round(good, 4), "bad_pages": bad,
                      "accept_share": rules.qc_accept_share}, by=actor.label)
        if not accepted:
            store_stations.add_notice(db, batch["station_id"], "rescan", json.dumps({
                "bundle_id": batch["bundle_id"], "archive_no": manifest["dossier"]["archive_no"],
                "item": manifest["material"]["item"], "pages": bad, "inspector": actor.id,
                "good_share": round(good, 4)}, ensure_ascii=False), utcnow())
    return status(archive, batch["bundle_id"])


def sample_page(archive: Archive, actor: Actor, bundle: str, n: int) -> tuple[dict, BinaryIO]:
    """Open one sampled page of a batch for the inspector who drew the sample: checked, logged, returned."""
    batch = _own_batch(archive, actor, bundle)
    if n not in json.loads(batch["sample"]):
        raise CentralError(f"page {n} is not in the sample {json.loads(batch['sample'])}")
    manifest = json.loads(bundles.manifest(archive.catalogue, batch["bundle_id"]))
    archive_no = manifest["dossier"]["archive_no"]
    unit = store_stations.unit_of(archive.catalogue, batch["station_id"])
    guard(archive, actor, "content.view", unit=unit, archive_no=archive_no)
    page = next(p for p in manifest["pages"] if p["n"] == n)
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "content.view", archive_no,
                     {"archive_no": archive_no, "item": manifest["material"]["item"], "page": n,
                      "sha256": page["sha256"], "bundle_id": batch["bundle_id"], "qc": True}, by=actor.label)
    return page, archive.blobs.open(page["sha256"])


def status(archive: Archive, bundle: str) -> dict:
    batch = _batch(archive, bundle)
    batch["sample"] = json.loads(batch["sample"])
    batch["judged"] = {r["n"]: {"good": bool(r["good"]), "reason": r["reason"]}
                       for r in store_qc.judgements(archive.catalogue, batch["bundle_id"])}
    return batch


def listing(archive: Archive, actor: Actor) -> list[dict]:
    """Committed batches of ``actor``'s units with their QC state ('waiting' when nobody has sampled them
    yet), leaving out their own dossier and their relatives' (回避)."""
    guard(archive, actor, "qc.inspect")
    avoided = sorted({actor.own_archive_no, *actor.relatives} - {None})
    return store_qc.committed_batches(archive.catalogue, scoped_units(actor), avoided)


def notices(archive: Archive, station_id: str, after: int = 0) -> list[dict]:
    """What a station has been told since notice ``after``: rescan requests."""
    return store_stations.notices(archive.catalogue, station_id, after)


def _bundle(archive: Archive, bundle: str) -> dict:
    rows = bundles.committed_by_prefix(archive.catalogue, bundle)
    if len(rows) != 1:
        raise UnknownBundle(f"{'no' if not rows else 'more than one'} committed bundle {bundle}; "
                            "'quire-central qc ls' lists them")
    return rows[0]


def _own_batch(archive: Archive, actor: Actor, bundle: str) -> dict:
    """The batch under QC, refusing anyone but the inspector who drew its sample."""
    batch = _batch(archive, bundle)
    if batch["inspector"] != actor.id:
        refuse(archive, actor, "qc.inspect",
               f"batch {batch['bundle_id'][:12]} is inspected by {batch['inspector']}, not {actor.id}")
    return batch


def _batch(archive: Archive, bundle: str) -> dict:
    rows = store_qc.by_prefix(archive.catalogue, bundle)
    if len(rows) != 1:
        raise UnknownBundle(f"no QC started for bundle {bundle}; start it with 'quire-central qc start BUNDLE'")
    return rows[0]
