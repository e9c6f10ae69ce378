"""The off-site copy, the primary's side: push everything to the copy and know how far behind it is.

Push, not pull: the primary sends with the station sync's own Offer / Write / Commit messages and its
resumable, CRC-checked chunks, so there is one transfer path to trust, and the primary learns the
copy's position from every answer (the lag it shows is the copy's signed word, not a guess). The copy
needs no credentials to read the primary; it accepts calls only signed by the primary key it pinned.
Run by a systemd timer on the primary (systemd/quire-central-replicate.timer), or by hand.
"""

import contextlib
import hashlib
import json
import random
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import grpc

from quire import callauth, keys
from quire import refusal
from quire.canonical import canonical_bytes, parse_json_object
from quire.chunks import write_request
from quire.db import utcnow
from quire.errors import ContractError
from quire.v1 import sync_pb2, sync_pb2_grpc

from . import audit
from .archive import Archive
from .config import CentralConfig
from .errors import CentralError
from .replica import (ACK_CONTEXT, ACK_FORMAT, SOURCE_ID, TRANSFER_CONTEXT, TRANSFER_FORMAT, ReplicaError,
                      fetch_identity, write_json)
from .store import audit_log, blob_index, bundles
from .tls import TLS_NAME

STATE_FILE = "replication.json"   # in the primary's home (not its catalogue: a copy must not inherit it)
STATE_FORMAT = "quire.replication/1"
CHUNK_BYTES = 2 << 20             # as the station's default (bench/sync.py: 2 MiB beat 1 and 3 MiB)
STREAM_BYTES = 64 << 20           # a Write stream carries blobs up to about this many bytes
TIMEOUT_S = 30.0
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.DATA_LOSS, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class CopyUnreachable(CentralError):
    exit_code = 75  # EX_TEMPFAIL: the timer tries again


class CopyRefused(CentralError):
    exit_code = 65


def state_path(cfg: CentralConfig) -> Path:
    return cfg.home / STATE_FILE


def load(cfg: CentralConfig) -> dict | None:
    """The primary's record of its copy, or None when it has none."""
    try:
        state = json.loads(state_path(cfg).read_text())
    except FileNotFoundError:
        return None
    if state.get("format") != STATE_FORMAT:
        raise ReplicaError(f"{state_path(cfg)}: unknown format {state.get('format')!r}; upgrade Quire")
    return state


def add_copy(archive: Archive, address: str, pin: str, by: str | None = None) -> dict:
    """Record the copy at ``address`` (its key fingerprint ``pin``, given out of band) as this archive's copy;
    logged, since from now on everything this archive holds also goes there."""
    key, cert = fetch_identity(address, pin, archive.config.insecure)
    if key == archive.public_key:
        raise ReplicaError(f"{address} is this archive itself; give the copy's address")
    state = load(archive.config) or {"format": STATE_FORMAT, "acked": None, "last_contact": "", "last_error": ""}
    state.update(copy_address=address, copy_key=key.hex(), copy_fingerprint=keys.fingerprint(key), copy_cert=cert)
    write_json(state_path(archive.config), state)
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "replica.add", keys.fingerprint(key), {"copy_key": keys.fingerprint(key),
                                                                       "copy_address": address}, by=by)
    return state


# ---- lag ------------------------------------------------------------------------------------------

def lag(archive: Archive) -> dict | None:
    """How far behind the copy is, by its last signed acknowledgement: entries, bundles, blobs, last contact."""
    state = load(archive.config)
    if state is None:
        return None
    here = {"entries": audit_log.size(archive.catalogue), "bundles": bundles.count(archive.catalogue, "committed"),
            "blobs": blob_index.count(archive.catalogue)}
    acked = state.get("acked") or {}
    return {"copy": state["copy_address"], "copy_fingerprint": state["copy_fingerprint"],
            "entries_behind": here["entries"] - acked.get("tree_size", 0),
            "bundles_behind": here["bundles"] - acked.get("bundles", 0),
            "blobs_behind": here["blobs"] - acked.get("blobs", 0),
            "copy_entries": acked.get("tree_size", 0), "copy_root": acked.get("root_hash", ""),
            "replicated_at": acked.get("applied_at", ""), "last_contact": state.get("last_contact", ""),
            "last_error": state.get("last_error", "")}


def health_problems(behind: dict, max_entries: int = 0, max_age_s: float = 3600.0) -> list[str]:
    """What a monitoring check should raise about the copy's lag (empty when all is well)."""
    out = []
    if behind["last_error"]:
        out.append(f"the last push failed: {behind['last_error']}")
    if behind["entries_behind"] > max_entries:
        out.append(f"the copy lacks {behind['entries_behind']} audit entries and {behind['bundles_behind']} "
                   "bundles; run 'quire-central replicate' (is quire-central-replicate.timer enabled?)")
    if not behind["last_contact"]:
        out.append("the copy was never reached")
    else:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(behind["last_contact"])).total_seconds()
        if age > max_age_s:
            out.append(f"the copy was last reached {age / 3600:.1f} h ago ({behind['last_contact']})")
    return out


# ---- push -----------------------------------------------------------------------------------------

@dataclass
class PushReport:
    up_to_date: bool = False
    blobs_sent: int = 0
    bytes_sent: int = 0
    retries: int = 0
    ack: dict = field(default_factory=dict)


class _Signer(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Signs every call as a station signs its own, with the primary's archive key."""

    def __init__(self, key):
        self.key = key

    def _signed(self, details, body_sha256: str):
        time_ms, nonce = int(time.time() * 1000), secrets.token_hex(callauth.NONCE_BYTES)
        payload = callauth.call_payload(details.method, SOURCE_ID, time_ms, nonce, body_sha256)
        metadata = list(details.metadata or []) + [
            (callauth.HEADER_STATION, SOURCE_ID), (callauth.HEADER_TIME, str(time_ms)),
            (callauth.HEADER_NONCE, nonce), (callauth.HEADER_SIGNATURE, keys.sign(self.key, keys.CALL_CONTEXT, payload))]
        return _Details(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready,
                        details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._signed(details, callauth.body_digest(request)), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._signed(details, ""), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


def _channel(archive: Archive, state: dict) -> grpc.Channel:
    options = [("grpc.ssl_target_name_override", TLS_NAME), ("grpc.max_send_message_length", CHUNK_BYTES + (64 << 10))]
    if archive.config.insecure:
        channel = grpc.insecure_channel(state["copy_address"], options=options)
    else:
        channel = grpc.secure_channel(state["copy_address"],
                                      grpc.ssl_channel_credentials(state["copy_cert"].encode()), options=options)
    return grpc.intercept_channel(channel, _Signer(archive.key))


def push(archive: Archive, retry_span_s: float = 300.0, sleep=time.sleep, address: str | None = None) -> PushReport:
    """Bring the copy up to date: a consistent snapshot of the catalogue and every blob it lacks, resumed
    from the copy's committed offsets after a broken call; tried again with backoff for ``retry_span_s``."""
    cfg = archive.config
    state = load(cfg)
    if state is None:
        raise ReplicaError("this archive has no off-site copy yet; set one up: on the copy 'quire-central replica "
                           "init --primary HOST:PORT --pin FINGERPRINT', here 'quire-central replica add --copy "
                           "HOST:PORT --pin FINGERPRINT'")
    if address:
        state = dict(state, copy_address=address)
    report = PushReport()
    deadline, tries = None, 0
    while True:
        try:
            _push_once(archive, state, report)
            _note(cfg, last_contact=utcnow(), last_error="", acked=report.ack or None)
            return report
        except CentralError as exc:   # this side found the copy's answer wrong (another primary's copy, a bad ack)
            _note(cfg, last_contact=utcnow(), last_error=str(exc))
            raise
        except grpc.RpcError as exc:
            scope = refusal.scope_of(exc)
            if exc.code() not in _TRANSIENT or scope in ("caller", "bundle"):
                message = f"the copy at {state['copy_address']} refused: {exc.details()}"
                _note(cfg, last_contact=utcnow(), last_error=message)
                raise CopyRefused(message) from None
            why = f"the copy at {state['copy_address']} is unreachable ({exc.code().name}: {exc.details()})"
        now = time.monotonic()
        deadline = deadline or now + retry_span_s
        if now >= deadline:
            _note(cfg, last_error=why)
            raise CopyUnreachable(why + "; the next run resumes where this one stopped")
        report.retries += 1
        tries += 1
        sleep(min(deadline - now, random.uniform(0, min(5.0, 0.2 * 2 ** min(tries, 10)))))


def _note(cfg: CentralConfig, **fields) -> None:
    state = load(cfg)
    if state is None:
        return
    if fields.get("acked") is None:
        fields.pop("acked", None)
    state.update(fields)
    write_json(state_path(cfg), state)


def _push_once(archive: Archive, state: dict, report: PushReport) -> None:
    with _channel(archive, state) as channel:
        stub = sync_pb2_grpc.ArchiveReplicaStub(channel)
        # Write takes requests serialised by quire.chunks.write_request (one copy of each chunk, not two).
        write = channel.stream_unary("/quire.v1.ArchiveReplica/Write", request_serializer=None,
                                     response_deserializer=sync_pb2.WriteResponse.FromString)
        there = stub.State(sync_pb2.GetInfoRequest(), timeout=TIMEOUT_S)
        mine = keys.fingerprint(archive.public_key)
        if there.primary_key_fingerprint != mine:
            raise ReplicaError(f"the copy at {state['copy_address']} follows {there.primary_key_fingerprint}, not "
                               f"this archive ({mine}); check 'replica add --copy'")
        head = audit.latest_checkpoint(archive)
        seq = blob_index.newest_seq(archive.catalogue)
        if head is not None and there.tree_size == head.tree_size and there.root_hash == head.body["root_hash"] \
                and there.blobs_seq >= seq:
            report.up_to_date = True
            report.ack = report.ack or (state.get("acked") or {})
            return
        copy_seq = there.blobs_seq
        while True:  # a copy far behind first takes its missing blobs in batches, then the snapshot
            snapshot, listing, blobs = _prepare(archive, copy_seq, head)
            report.ack = _transfer(archive, stub, write, state, snapshot, listing, blobs, report)
            if snapshot is not None:
                snapshot.unlink(missing_ok=True)
                return
            copy_seq = report.ack["blobs_seq"]


def _transfer(archive: Archive, stub, write, state: dict, snapshot: Path | None, listing: bytes,
              blobs: dict[str, int], report: PushReport) -> dict:
    """Offer one signed listing, upload what the copy lacks from its committed offsets, commit; the copy's
    checked acknowledgement."""
    offer = stub.Offer(sync_pb2.OfferRequest(station_id=SOURCE_ID, manifest=listing,
                                             signature=keys.sign(archive.key, TRANSFER_CONTEXT, listing)),
                       timeout=TIMEOUT_S)
    if len(offer.committed_sizes) != len(offer.missing_sha256):
        raise ReplicaError("the copy answered the offer without resume points; it runs another version")
    paths: dict[str, Path | None] = {sha: None for sha in blobs}
    sizes = dict(blobs)
    for path in ([snapshot, *_profile_files(archive)] if snapshot is not None else []):
        paths[_sha_of(path)], sizes[_sha_of(path)] = path, path.stat().st_size
    todo = [(sha, offset) for sha, offset in zip(offer.missing_sha256, offer.committed_sizes)]
    unknown = [sha for sha, _ in todo if sha not in sizes]
    if unknown:
        raise ReplicaError(f"the copy asked for blob {unknown[0][:12]}, which this transfer does not list")
    for group in _streams(todo, sizes):
        reply = write(_requests(archive, offer.bundle_id, group, sizes, paths, report),
                      timeout=TIMEOUT_S + sum(sizes[s] - o for s, o in group) / 250_000)
        done = set(reply.completed_sha256)
        report.blobs_sent += sum(1 for sha, _ in group if sha in done)
    answer = stub.Commit(sync_pb2.CommitRequest(station_id=SOURCE_ID, bundle_id=offer.bundle_id),
                         timeout=TIMEOUT_S + 600)
    return _checked_ack(state, answer.receipt, offer.bundle_id)


def _checked_ack(state: dict, signed, transfer_id: str) -> dict:
    try:
        keys.verify(bytes.fromhex(state["copy_key"]), ACK_CONTEXT, signed.receipt, signed.signature,
                    "the copy's acknowledgement")
        ack = parse_json_object(signed.receipt, "replica acknowledgement")
    except ContractError as exc:
        raise CopyRefused(f"the copy's acknowledgement does not verify ({exc}); its position is unknown") from None
    if ack.get("format") != ACK_FORMAT or ack.get("transfer") != transfer_id:
        raise CopyRefused("the copy acknowledged another transfer; its position is unknown")
    return ack


_snapshot_cache: dict[Path, tuple[int, str]] = {}


def _sha_of(path: Path) -> str:
    st = path.stat()
    known = _snapshot_cache.get(path)
    if known and known[0] == st.st_mtime_ns:
        return known[1]
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    _snapshot_cache[path] = (st.st_mtime_ns, digest)
    return digest


MAX_LISTED = 50_000   # blobs one listing names (its JSON stays well inside the 8 MB an offer may carry)


def _prepare(archive: Archive, copy_seq: int, head) -> tuple[Path | None, bytes, dict[str, int]]:
    """The signed listing of the next transfer and what it names: when more than MAX_LISTED blobs are newer
    than the copy's ``copy_seq``, a batch of them alone (no snapshot); else a consistent snapshot of the
    catalogue (SQLite's backup API), the blobs it records after ``copy_seq`` and this archive's profiles."""
    ahead = blob_index.since(archive.catalogue, copy_seq, MAX_LISTED + 1)
    if len(ahead) > MAX_LISTED:
        batch = ahead[:MAX_LISTED]
        return None, _listing(archive, None, None, batch[-1]["seq"],
                              {r["sha256"]: r["bytes"] for r in batch}), {r["sha256"]: r["bytes"] for r in batch}
    folder = archive.config.home / "replication"
    folder.mkdir(mode=0o700, exist_ok=True)
    snapshot = folder / "snapshot.db"
    tmp = folder / "snapshot.db.tmp"
    tmp.unlink(missing_ok=True)
    target = sqlite3.connect(tmp)
    try:
        archive.catalogue.copy_to(target)
        target.execute("PRAGMA journal_mode=DELETE")
        recorded = blob_index.since(target, copy_seq)
        seq = blob_index.newest_seq(target)
        newest = audit_log.latest_checkpoint(target)
    finally:
        target.close()
    tmp.replace(snapshot)
    checkpoint = newest.to_json() if newest else None
    blobs = {r["sha256"]: r["bytes"] for r in recorded}
    return snapshot, _listing(archive, snapshot, checkpoint, seq, blobs), blobs


def _listing(archive: Archive, snapshot: Path | None, checkpoint: dict | None, seq: int,
             blobs: dict[str, int]) -> bytes:
    files = _profile_files(archive) if snapshot is not None else []
    return canonical_bytes({
        "format": TRANSFER_FORMAT, "primary": keys.fingerprint(archive.public_key), "made_at": utcnow(),
        "checkpoint": checkpoint, "blobs_seq": seq,
        "snapshot": {"sha256": _sha_of(snapshot), "bytes": snapshot.stat().st_size} if snapshot else None,
        "blobs": [{"sha256": sha, "bytes": size} for sha, size in blobs.items()],
        "profiles": [{"name": p.name, "sha256": _sha_of(p), "bytes": p.stat().st_size} for p in files]})


def _profile_files(archive: Archive) -> list[Path]:
    """The archive's own standards profiles (home/profiles/*.toml): the copy must judge by the same rules."""
    return sorted((archive.config.home / "profiles").glob("*.toml"))


def _streams(todo: list[tuple[str, int]], sizes: dict[str, int]) -> list[list[tuple[str, int]]]:
    groups, size = [[]], 0
    for sha, offset in todo:
        n = sizes[sha] - offset
        if groups[-1] and size + n > STREAM_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((sha, offset))
        size += n
    return groups if todo else []


@contextlib.contextmanager
def _opened(archive: Archive, sha256: str, path: Path | None):
    """A stored blob (or the snapshot file) for reading: the one place blobs are read here."""
    fh = open(path, "rb") if path is not None else archive.blobs.open(sha256)
    try:
        yield fh
    finally:
        fh.close()


def _requests(archive: Archive, transfer_id: str, group, sizes, paths, report: PushReport):
    first = True
    for sha, offset in group:
        with _opened(archive, sha, paths.get(sha)) as fh:
            fh.seek(offset)
            start = True
            while True:
                data = fh.read(CHUNK_BYTES)
                last = offset + len(data) >= sizes[sha] or not data
                head = sync_pb2.WriteRequest(write_offset=offset)
                if start:
                    head.sha256, start = sha, False
                if first:
                    head.station_id, head.bundle_id, first = SOURCE_ID, transfer_id, False
                yield write_request(head, data, last)
                offset += len(data)
                report.bytes_sent += len(data)
                if last:
                    break
