"""The gRPC server: a thin servicer over the ingest functions, built by a factory."""

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quire import keys
from quire import manifest as manifest_format
from quire.v1 import sync_pb2, sync_pb2_grpc

from . import ingest
from .archive import Archive
from .grpc_errors import ErrorInterceptor

SERVICE_VERSION = "0.1.0"


class StationSyncServicer(sync_pb2_grpc.StationSyncServicer):
    def __init__(self, archive: Archive):
        self.archive = archive

    def GetInfo(self, request, context):
        return sync_pb2.CentralInfo(
            service_version=SERVICE_VERSION,
            public_key=self.archive.public_key,
            key_fingerprint=keys.fingerprint(self.archive.public_key),
            manifest_formats=list(manifest_format.KNOWN_FORMATS),
        )

    def Offer(self, request, context):
        result = ingest.offer(self.archive, request.station_id, request.manifest, request.signature)
        response = sync_pb2.OfferResponse(bundle_id=result.bundle_id, missing_sha256=result.missing)
        if result.receipt:
            response.receipt.receipt, response.receipt.signature = result.receipt
        return response

    def QueryWriteStatus(self, request, context):
        size, complete = ingest.write_status(self.archive, request.station_id, request.bundle_id, request.sha256)
        return sync_pb2.QueryWriteStatusResponse(committed_size=size, complete=complete)

    def Write(self, request_iterator, context):
        size, complete = ingest.write(self.archive, iter(request_iterator))
        return sync_pb2.WriteResponse(committed_size=size, complete=complete)

    def Commit(self, request, context):
        data, signature = ingest.commit(self.archive, request.station_id, request.bundle_id)
        return sync_pb2.CommitResponse(receipt=sync_pb2.SignedReceipt(receipt=data, signature=signature))


def build_server(archive: Archive, listen: str) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server bound to ``listen``; returns it and the bound port."""
    options = [
        ("grpc.max_receive_message_length", archive.config.max_chunk_bytes + (64 << 10)),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=archive.config.workers, thread_name_prefix="quire-rpc"),
        interceptors=[ErrorInterceptor()],
        options=options,
    )
    sync_pb2_grpc.add_StationSyncServicer_to_server(StationSyncServicer(archive), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service = sync_pb2.DESCRIPTOR.services_by_name["StationSync"].full_name
    health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([service, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, port
