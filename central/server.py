"""The gRPC server: a thin servicer over the ingest functions, built by a factory."""

import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quire import keys
from quire import manifest as manifest_format
from quire.v1 import access_pb2, access_pb2_grpc, sync_pb2, sync_pb2_grpc

from . import capacity, directory, ingest, qc, refusals, stations
from .access_server import ArchiveAccessServicer
from .archive import Archive
from .auth import StationAuthInterceptor, current_station
from .errors import CentralError
from .grpc_errors import ErrorInterceptor
from .limits import LimitsInterceptor
from .read_ahead import read_ahead
from .replica_server import CopyGate, ReplicaServicer

SERVICE_VERSION = "0.1.0"


class StationSyncServicer(sync_pb2_grpc.StationSyncServicer):
    def __init__(self, archive: Archive):
        self.archive = archive

    def GetInfo(self, request, context):
        cert_sha256 = self.archive.tls.cert_sha256
        return sync_pb2.CentralInfo(
            service_version=SERVICE_VERSION,
            public_key=self.archive.public_key,
            key_fingerprint=keys.fingerprint(self.archive.public_key),
            manifest_formats=list(manifest_format.KNOWN_FORMATS),
            tls_cert_sha256=cert_sha256,
            tls_binding_signature=keys.sign(self.archive.key, keys.TLS_BINDING_CONTEXT, cert_sha256),
        )

    def Enroll(self, request, context):
        state, code, unit = stations.request_enrolment(
            self.archive, request.station_id, request.public_key, request.hostname, request.time_ms,
            request.signature, refusals.source(context))
        states = {"pending": sync_pb2.EnrollResponse.PENDING, "approved": sync_pb2.EnrollResponse.APPROVED}
        return sync_pb2.EnrollResponse(state=states[state], pairing_code=code, unit=unit or "")

    def Offer(self, request, context):
        result = ingest.offer(self.archive, _caller(request.station_id), request.manifest, request.signature)
        response = sync_pb2.OfferResponse(bundle_id=result.bundle_id, missing_sha256=result.missing,
                                          committed_sizes=result.committed_sizes)
        if result.receipt:
            response.receipt.receipt, response.receipt.signature = result.receipt
        return response

    def QueryWriteStatus(self, request, context):
        size, complete = ingest.write_status(self.archive, _caller(request.station_id), request.bundle_id, request.sha256)
        return sync_pb2.QueryWriteStatusResponse(committed_size=size, complete=complete)

    def Write(self, request_iterator, context):
        written = ingest.write(self.archive, _claims_checked(read_ahead(iter(request_iterator))))
        return sync_pb2.WriteResponse(committed_size=written.size, complete=written.complete,
                                      completed_sha256=written.completed)

    def Commit(self, request, context):
        data, signature = ingest.commit(self.archive, _caller(request.station_id), request.bundle_id)
        return sync_pb2.CommitResponse(receipt=sync_pb2.SignedReceipt(receipt=data, signature=signature))

    def Notices(self, request, context):
        rows = qc.notices(self.archive, _caller(request.station_id), request.after_id)
        return sync_pb2.NoticesResponse(notices=[
            sync_pb2.Notice(id=r["id"], kind=r["kind"], body_json=r["body"], created_at=r["created_at"]) for r in rows])

    def Directory(self, request, context):
        rows = directory.for_station(self.archive, _caller(request.station_id), request.archive_no)
        return sync_pb2.DirectoryResponse(archive_no=request.archive_no, entries=[
            sync_pb2.DirectoryEntry(item=r["item"], title=r["title"], date_formed=r["date_formed"] or "",
                                    pages=r["page_count"], remarks=r["remarks"] or "") for r in rows])


class ListenFailed(CentralError):
    exit_code = 69  # EX_UNAVAILABLE: the address is taken; restarting alone will not help


class StationMismatch(CentralError):
    code = grpc.StatusCode.PERMISSION_DENIED
    scope = "caller"


def _caller(claimed: str) -> str:
    """The authenticated station, refusing a request that claims to be another."""
    station = current_station.get()
    if station is None or claimed != station:
        raise StationMismatch(f"call signed by station {station!r} claims to be {claimed!r}; refused")
    return station


def _claims_checked(messages):
    first = next(messages, None)
    if first is not None:
        _caller(first.station_id)
        yield first
    yield from messages


def build_server(archive: Archive, listen: str, tls: bool = True) -> tuple["ArchiveServer", int]:
    """A server (not yet started) bound to ``listen``; returns it and the bound port.

    TLS with the archive's pinned certificate unless ``tls`` is False (a lab, explicitly).
    """
    options = [
        ("grpc.max_receive_message_length", archive.config.max_chunk_bytes + (64 << 10)),
        ("grpc.so_reuseport", 0),
        # Flow control per message, not grown to megabytes per stream by bandwidth probing: what a
        # Write stream has in flight is bounded by read_ahead's queue, and a broken connection loses
        # at most the chunk on the wire (bench/sync.py measures it).
        ("grpc.http2.bdp_probe", 0),
        # A connection that went dead without a word (a cable pulled, a NAT forgetting it) is found by
        # pings and closed, ending its calls; stations' own keepalive pings are accepted.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.max_connection_idle_ms", 15 * 60_000),
    ]
    cfg = archive.config
    threads = capacity.threads_needed(cfg.workers, cfg.open_calls)
    pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="quire-rpc")
    shares = capacity.CapacityInterceptor(cfg.workers, cfg.open_calls, cfg.stream_idle_s)
    server = grpc.server(
        pool,
        # Order matters: errors raised by the checks after it are translated too; requests outside their
        # bounds are refused before authentication reads them; shares are taken by authenticated stations.
        interceptors=[ErrorInterceptor(archive), LimitsInterceptor(), CopyGate(archive), StationAuthInterceptor(archive),
                      shares],
        options=options,
        # Calls waiting for a thread are bounded too: beyond this, RESOURCE_EXHAUSTED at once.
        maximum_concurrent_rpcs=4 * threads,
    )
    sync_pb2_grpc.add_StationSyncServicer_to_server(StationSyncServicer(archive), server)
    access_pb2_grpc.add_ArchiveAccessServicer_to_server(ArchiveAccessServicer(archive), server)
    sync_pb2_grpc.add_ArchiveReplicaServicer_to_server(ReplicaServicer(archive), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [sync_pb2.DESCRIPTOR.services_by_name["StationSync"].full_name,
                access_pb2.DESCRIPTOR.services_by_name["ArchiveAccess"].full_name,
                sync_pb2.DESCRIPTOR.services_by_name["ArchiveReplica"].full_name]
    for service in services:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        if tls:
            credentials = grpc.ssl_server_credentials([(archive.tls.key_pem, archive.tls.cert_pem)])
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:  # gRPC says only "Failed to bind"; the usual causes are named instead
        port = 0
    if port == 0:
        server.stop(None)
        raise ListenFailed(f"cannot listen on {listen}: the port is in use by another program or the address is "
                           "not this machine's; stop the other service or choose another (--listen, or listen in "
                           "central.toml)")
    return ArchiveServer(server, pool, shares, archive), port


class ArchiveServer:
    """A gRPC server whose ``stop`` also ends its pool of handler threads (gRPC leaves them running) and
    writes the refusal entries still waiting for the writer lock."""

    def __init__(self, server: grpc.Server, pool: futures.ThreadPoolExecutor, shares: capacity.CapacityInterceptor,
                 archive: Archive):
        self._server, self._pool, self._shares, self._archive = server, pool, shares, archive

    def start(self) -> None:
        self._server.start()

    @property
    def uploads_free(self) -> int:
        """Upload slots free at this moment (of ``workers`` less the threads kept for other calls)."""
        with self._shares.lock:
            return self._shares.uploads_free

    def stop(self, grace: float | None) -> threading.Event:
        """Stop taking calls, let those in flight finish within ``grace``, then end the handler threads and
        wait a few seconds (``refusals.SETTLE_S``) for refusal entries held up by another process's write."""
        stopped = self._server.stop(grace)
        stopped.wait()
        self._shares.close()
        self._pool.shutdown(wait=True)
        refusals.settle(self._archive)
        return stopped
