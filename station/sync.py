"""Send sealed bundles to the central service: offer, upload what it lacks, commit, keep the receipt."""

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import grpc

from quire import keys, refusal
from quire import manifest as manifest_format
from quire import receipt as receipt_format
from quire.chunks import write_request
from quire.db import utcnow
from quire.errors import ContractError
from quire.v1 import sync_pb2, sync_pb2_grpc

from . import notices, outbox
from .discovery import relocated
from .errors import CentralKeyMismatch, CentralUnreachable, NotEnrolledError, SyncError
from .home import Station
from .transport import endpoints, explain_unavailable, open_channel, probe
from .witness import witness

# Failures of the connection or the service rather than refusals: worth another try after a pause.
# Used only when the archive typed no scope (an older archive, or the call never reached it).
_TRANSIENT = {
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


# A Write stream carries blobs up to about this many bytes: one call for a bundle of small pages,
# progress noted between streams; a bigger page goes in a stream of its own.
_STREAM_BYTES = 64 << 20
_PROGRESS_EVERY_S = 1.0
MIN_TURN_WAIT_S = 0.05       # the least a station waits when the archive names a wait for a free upload slot


@dataclass
class SyncReport:
    committed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0          # page bytes the archive acknowledged holding that it lacked before this run
    pages: int = 0
    retries: int = 0
    waits: int = 0               # of the retries: uploads sent again after waiting for a free slot at the archive
    alarms: list[str] = field(default_factory=list)
    notices: list[dict] = field(default_factory=list)   # new ones from the archive (QC rescan requests)
    stopped: str = ""            # why the archive refuses this station for now; every bundle stays queued
    answered: dict[str, str] = field(default_factory=dict)  # each archive address: "" answered, else why not
    _held: dict[str, int] = field(default_factory=dict, repr=False)

    def acknowledged(self, bundle_id: str, held: int) -> bool:
        """The archive holds ``held`` bytes of the bundle's pages (the first figure of a run is where it
        started); True when that is more than it held before."""
        before = self._held.setdefault(bundle_id, held)
        if held <= before:
            return False
        self.bytes_sent += held - before
        self._held[bundle_id] = held
        return True


class BundleRefused(Exception):
    """The archive refused this bundle itself (or the station's own copy is damaged): set it aside."""


class StationRefused(Exception):
    """The archive refuses this station for now (unknown, suspended, clock off): stop, keep every bundle."""


def sync(station: Station, central: str | None = None, sleep=time.sleep) -> SyncReport:
    """Push every queued bundle; refused ones are kept with the reasons, nothing is dropped.

    A broken call (the first one too) is tried again, backing off exponentially with full jitter, for
    ``sync_retry_span_s`` from the first failure in a row — long enough to outlast an archive restart —
    on a fresh connection, resuming uploads from the central service's committed offset; when it stays
    unreachable the rest waits. An upload turned away because every slot of the archive is taken waits the
    time the archive names and is sent again on the same connection, without offering the bundle again.
    """
    address = central or station.config.central or station.store.get_meta("central_address")
    if not address:
        raise SyncError("no central service known; run 'quire-station enroll --central HOST:PORT' "
                        "or set 'central' in station.toml")
    address = central or relocated(station, address)  # an archive that moved is found by its pinned key
    session = _Session(station, address, _Backoff(station.config, sleep))
    try:
        session.run()
    finally:
        session.close()
        _note_answered(station, address, session.report)
    return session.report


def _note_answered(station: Station, address: str, report: SyncReport) -> None:
    """With several archive addresses, keep for `quire-station status` which answered at the end of
    this run (one address: the sync state says it)."""
    if len(endpoints(address)) < 2:
        return
    report.answered = probe(station, address, min(station.config.sync_timeout_s, 3.0))
    station.store.set_meta("central_answered", json.dumps({"at": utcnow(), "addresses": report.answered}))


class _Backoff:
    """Pauses between tries: exponential with full jitter, until the retry span has passed since the
    first failure of a row; progress (a bundle delivered, more of it acknowledged) ends the row."""

    def __init__(self, cfg, sleep, clock=time.monotonic):
        self.cfg, self.sleep, self.clock = cfg, sleep, clock
        self.deadline: float | None = None
        self.tries = 0

    def _left(self) -> float:
        """Seconds left of the retry span, which starts at the first failure in a row."""
        now = self.clock()
        if self.deadline is None:
            self.deadline = now + self.cfg.sync_retry_span_s
        return self.deadline - now

    def pause(self) -> bool:
        """Wait before the next try; False (no wait) once the span is used up."""
        left = self._left()
        if left <= 0:
            return False
        ceiling = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** min(self.tries, 30))
        self.sleep(min(left, random.uniform(0, ceiling)))
        self.tries += 1
        return True

    def wait_turn(self, told_s: float | None) -> bool:
        """Wait the time the archive named (give or take a quarter, at most ``backoff_max_s``), or back off
        as after a failure when it named none; False (no wait) once the span is used up."""
        if told_s is None:
            return self.pause()
        left = self._left()
        if left <= 0:
            return False
        # A wait of nothing (from a proxy, or another server) would spin through the span: never less than this.
        told_s = max(told_s, MIN_TURN_WAIT_S)
        self.sleep(min(left, self.cfg.backoff_max_s, told_s * random.uniform(0.75, 1.25)))
        return True

    def reset(self) -> None:
        self.deadline, self.tries = None, 0


class _Session:
    """One sync run: a channel (opened afresh after a failure), its backoff and its report."""

    def __init__(self, station: Station, address: str, backoff: _Backoff):
        self.station, self.address, self.backoff = station, address, backoff
        self.report = SyncReport()
        self.channel = open_channel(station, address)
        self.stub = _Stub(self.channel)
        self.central_key = b""

    def close(self) -> None:
        self.channel.close()

    def reconnect(self) -> None:
        """A fresh connection: the old one may be half-dead (cut, stalled) without knowing it."""
        self.channel.close()
        self.channel = open_channel(self.station, self.address)
        self.stub = _Stub(self.channel)

    def run(self) -> None:
        store, report = self.station.store, self.report
        self.central_key = self._greet()
        store.set_meta("sync_state", f"online, last contact {utcnow()}")
        for bundle in outbox.rejected(store):
            self._recheck(bundle)
        unreachable = False
        for bundle in outbox.pending(store):
            unreachable = self._deliver(bundle)
            if report.stopped or unreachable:
                break  # the rest waits for the next run
        if report.stopped:
            store.set_meta("sync_state", f"refused since {utcnow()}: {report.stopped}")
        elif not unreachable:
            try:
                report.notices = notices.fetch(self.station, self.stub, self.station.config.sync_timeout_s)
            except grpc.RpcError:
                pass  # no news this time; asked again at the next sync

    def _greet(self) -> bytes:
        """The archive's key, checked against the pinned one; the first call is retried like any other."""
        while True:
            try:
                key = _checked_central_key(self.station, self.stub, self.address)
                self.backoff.reset()
                return key
            except CentralUnreachable as exc:
                if not self.backoff.pause():
                    self.station.store.set_meta("sync_state", f"offline since {utcnow()}: {exc}")
                    raise
                self.report.retries += 1
                self.reconnect()
            except SyncError as exc:
                self.station.store.set_meta("sync_state", f"offline since {utcnow()}: {exc}")
                raise

    def _deliver(self, bundle: dict) -> bool:
        """Send one bundle, trying again while the span lasts; True when the archive is unreachable."""
        store, report, bundle_id = self.station.store, self.report, bundle["id"]
        while True:
            try:
                self._send(bundle)
                report.failed.pop(bundle_id, None)
                self.backoff.reset()
                return False
            except BundleRefused as exc:
                outbox.mark_rejected(store, bundle_id, str(exc))
                report.rejected[bundle_id] = str(exc)
                report.failed.pop(bundle_id, None)
                self.backoff.reset()
                return False
            except StationRefused as exc:
                outbox.requeue(store, bundle_id, str(exc))
                report.stopped = str(exc)
                report.failed.pop(bundle_id, None)
                return False
            except grpc.RpcError as exc:
                reason = _describe(exc, self.address)
                outbox.note_failure(store, bundle_id, reason)
                report.failed[bundle_id] = reason
                if not self.backoff.pause():
                    return exc.code() == grpc.StatusCode.UNAVAILABLE and refusal.scope_of(exc) is None
                report.retries += 1
                self.reconnect()

    def _call(self, method, request, timeout: float):
        """One call; a refusal becomes BundleRefused or StationRefused by the scope the archive typed."""
        try:
            reply = method(request, timeout=timeout)
        except grpc.RpcError as exc:
            scope = refusal.scope_of(exc)
            if scope == "bundle":
                raise BundleRefused(exc.details()) from None
            if scope == "caller" or scope is None and exc.code() not in _TRANSIENT:
                raise StationRefused(exc.details()) from None
            raise
        return reply

    def _send(self, bundle: dict) -> None:
        station = self.station
        timeout = station.config.sync_timeout_s
        sid = station.station_id
        bundle_id = bundle["id"]
        outbox.mark_uploading(station.store, bundle_id)
        offer = self._call(self.stub.Offer, sync_pb2.OfferRequest(
            station_id=sid, manifest=bundle["manifest"], signature=bundle["signature"]), timeout)
        if offer.bundle_id != bundle_id:
            raise BundleRefused(f"central service computed bundle id {offer.bundle_id}, expected {bundle_id}")
        pages = manifest_format.blobs(json.loads(bundle["manifest"]))  # a cover sheet's image too
        fresh = not offer.HasField("receipt")
        if fresh:
            by_sha = {p["sha256"]: p for p in pages}
            unknown = [sha for sha in offer.missing_sha256 if sha not in by_sha]
            if unknown:
                raise BundleRefused(f"central service asked for blob {unknown[0]} that is not in the bundle")
            todo = [(by_sha[sha], offset) for sha, offset in _resume_points(offer)]
            held = sum(p["bytes"] for p in pages) - sum(page["bytes"] - offset for page, offset in todo)
            self._progress(bundle_id, held)
            for group in _streams(todo):
                reply = self._upload_in_turn(bundle_id, group, held)
                held += _acknowledged(group, reply)
                self._progress(bundle_id, held)
            signed = self._call(self.stub.Commit, sync_pb2.CommitRequest(station_id=sid, bundle_id=bundle_id),
                                timeout).receipt
        else:
            signed = offer.receipt
        try:
            body = receipt_format.verify(signed.receipt, signed.signature, self.central_key, bundle_id)
        except ContractError as exc:
            raise SyncError(f"receipt for bundle {bundle_id[:12]} does not verify ({exc}); bundle kept queued") from None
        self._committed(bundle, signed, body, fresh)

    def _progress(self, bundle_id: str, held: int) -> None:
        """The archive acknowledged holding ``held`` bytes of the bundle; more than before ends a row of failures."""
        if self.report.acknowledged(bundle_id, held):
            self.backoff.reset()
        outbox.note_progress(self.station.store, bundle_id, held)

    def _recheck(self, bundle: dict) -> None:
        """Ask once about a refused bundle: an archivist may since have catalogued it (a four-eyes
        replacement), and then the archive answers with its receipt. Any other answer leaves it as it is."""
        try:
            offer = self._call(self.stub.Offer, sync_pb2.OfferRequest(
                station_id=self.station.station_id, manifest=bundle["manifest"], signature=bundle["signature"]),
                self.station.config.sync_timeout_s)
        except (grpc.RpcError, BundleRefused, StationRefused):
            return  # still refused (the reasons kept are the archive's), or the archive is unreachable now
        if offer.bundle_id != bundle["id"] or not offer.HasField("receipt"):
            return
        try:
            body = receipt_format.verify(offer.receipt.receipt, offer.receipt.signature, self.central_key,
                                         bundle["id"])
        except ContractError:
            return
        self._committed(bundle, offer.receipt, body, fresh=False)

    def _committed(self, bundle: dict, signed, body: dict, fresh: bool) -> None:
        """Keep the verified receipt, then witness the audit log it vouches for."""
        outbox.mark_committed(self.station.store, bundle["id"], signed.receipt, signed.signature)
        self.report.committed.append(bundle["id"])
        self.report.pages += len(json.loads(bundle["manifest"])["pages"])
        alarm = witness(self.station.store, signed.receipt, body, self.central_key, fresh)
        if alarm:
            self.report.alarms.append(alarm)

    def _upload_in_turn(self, bundle_id: str, group: list[tuple[dict, int]], held: int):
        """Send one Write stream; while the archive's upload slots are all taken, wait the time it names and
        send the same stream again on the same connection (the refused call stored nothing, so the offer's
        resume points stand): no reconnect, no new offer. Any other failure is raised."""
        while True:
            try:
                return self._upload_showing_progress(bundle_id, group, held)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or refusal.reason_of(exc) != refusal.UPLOADS_FULL:
                    raise
                if not self.backoff.wait_turn(refusal.pushback_s(exc)):
                    raise
                self.report.retries += 1
                self.report.waits += 1

    def _upload_showing_progress(self, bundle_id: str, group: list[tuple[dict, int]], held: int):
        """One Write call on a worker thread while this one notes, each second, how far it has got, so
        `quire-station status` moves during a long stream on a slow link; returns the archive's answer."""
        handed = [0]
        with ThreadPoolExecutor(1, thread_name_prefix="quire-upload") as pool:
            call = pool.submit(self._upload, bundle_id, group, handed)
            while not wait([call], timeout=_PROGRESS_EVERY_S).done:
                outbox.note_progress(self.station.store, bundle_id, held + handed[0])
            return call.result()

    def _upload(self, bundle_id: str, group: list[tuple[dict, int]], handed: list[int]):
        """Stream some page files, each from the central service's committed offset, in one Write call;
        ``handed`` counts the bytes given to gRPC so far."""
        station = self.station
        chunk = station.config.chunk_bytes

        def requests():
            first = True
            for page, offset in group:
                with open(station.store.page_path(page["sha256"], page["media_type"]), "rb") as fh:
                    fh.seek(offset)
                    start = True
                    while True:
                        data = fh.read(chunk)
                        last = offset + len(data) >= page["bytes"] or not data
                        head = sync_pb2.WriteRequest(write_offset=offset)
                        if start:
                            head.sha256, start = page["sha256"], False
                        if first:
                            head.station_id, head.bundle_id, first = station.station_id, bundle_id, False
                        yield write_request(head, data, last)
                        offset += len(data)
                        handed[0] += len(data)
                        if last:
                            break

        # A big stream on a slow link needs longer than one small call; a stalled link still times out.
        remaining = sum(page["bytes"] - offset for page, offset in group)
        try:
            return self._call(self.stub.Write, requests(), station.config.sync_timeout_s + remaining / 250_000)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DATA_LOSS:
                _check_own_copies(station, [page for page, _ in group], exc.details())
            raise


class _Stub(sync_pb2_grpc.StationSyncStub):
    """The generated stub, with Write taking requests already serialised by write_request."""

    def __init__(self, channel):
        super().__init__(channel)
        self.Write = channel.stream_unary(_WRITE_METHOD, request_serializer=None,
                                          response_deserializer=sync_pb2.WriteResponse.FromString)


def _checked_central_key(station: Station, stub, address: str) -> bytes:
    pinned = station.store.get_meta("central_key")
    if not pinned:
        raise NotEnrolledError("this station has not enrolled with a central archive yet; "
                               "run 'quire-station enroll --central HOST:PORT'")
    try:
        info = stub.GetInfo(sync_pb2.GetInfoRequest(), timeout=station.config.sync_timeout_s)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            raise explain_unavailable(station, address, exc) from None
        raise CentralUnreachable(_describe(exc, address) + "; bundles stay queued") from None
    if bytes.fromhex(pinned) != info.public_key:
        raise CentralKeyMismatch(
            f"central service at {address} presents key {keys.fingerprint(info.public_key)}, "
            f"but this station trusts {keys.fingerprint(bytes.fromhex(pinned))}; nothing was sent. "
            "If the archive really re-keyed, an operator must re-enrol this station")
    return info.public_key


def _acknowledged(group: list[tuple[dict, int]], reply) -> int:
    """Bytes a Write's answer says the archive stored of the group: each blob it completed, and of an
    unfinished last one, up to its committed size."""
    done = set(reply.completed_sha256)
    stored = sum(page["bytes"] - offset for page, offset in group if page["sha256"] in done)
    page, offset = group[-1]
    if page["sha256"] not in done:
        stored += max(0, reply.committed_size - offset)
    return stored


def _resume_points(offer) -> list[tuple[str, int]]:
    """Each missing blob with the bytes the central service already holds of it."""
    if len(offer.committed_sizes) != len(offer.missing_sha256):
        raise SyncError(f"central service named {len(offer.missing_sha256)} missing blobs but gave "
                        f"{len(offer.committed_sizes)} resume points; it speaks another version of the sync "
                        "contract — update the station or the archive so both match")
    return list(zip(offer.missing_sha256, offer.committed_sizes))


def _streams(todo: list[tuple[dict, int]]) -> list[list[tuple[dict, int]]]:
    """Blobs grouped into Write streams of about _STREAM_BYTES each (as many as the bytes round to,
    at least one, evened out): few calls, progress noted after each."""
    sizes = [page["bytes"] - offset for page, offset in todo]
    share = sum(sizes) / max(1, round(sum(sizes) / _STREAM_BYTES))
    groups, size = [[]], 0
    for item, n in zip(todo, sizes):
        if groups[-1] and size + n / 2 > share:
            groups.append([])
            size -= share
        groups[-1].append(item)
        size += n
    return groups if todo else []


_WRITE_METHOD = "/{}/Write".format(sync_pb2.DESCRIPTOR.services_by_name["StationSync"].full_name)
def _check_own_copies(station: Station, pages: list[dict], why: str) -> None:
    """The archive received damaged bytes: refuse to resend if the damage is in this station's copy."""
    for page in pages:
        if not station.store.page_intact(page["sha256"], page["media_type"]):
            raise BundleRefused(
                f"this station's copy of page {page['n']} ({station.store.page_path(page['sha256'], page['media_type'])}) "
                f"is damaged or missing: it no longer matches the sealed manifest (the archive reported: {why}); "
                "rescan the material")


def _describe(exc: grpc.RpcError, address: str) -> str:
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return f"central service at {address} is unreachable ({exc.details()})"
    return f"central service at {address}: {exc.code().name}: {exc.details()}"
