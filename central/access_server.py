"""The ArchiveAccess servicer: authenticates the caller's token, then calls ``access`` — nothing more."""

from quire.v1 import access_pb2, access_pb2_grpc

from . import access, audit, refusals, users
from .archive import Archive

CHUNK_BYTES = 1 << 20


def _consultation(row: dict) -> access_pb2.Consultation:
    return access_pb2.Consultation(
        id=row["id"], reader=row["reader"], archive_no=row["archive_no"], purpose=row["purpose"], days=row["days"],
        state=row["state"], export_state=row["export_state"], expires_at=row["expires_at"] or "",
        decided_by=row["decided_by"] or "")


class ArchiveAccessServicer(access_pb2_grpc.ArchiveAccessServicer):
    def __init__(self, archive: Archive):
        self.archive = archive

    def _actor(self, context):
        actor = users.from_metadata(self.archive, context.invocation_metadata(), refusals.peer_label(context))
        refusals.authenticated(actor.label)
        return actor

    def Whoami(self, request, context):
        actor = self._actor(context)
        with self.archive.catalogue.transaction() as db:
            audit.record(db, self.archive, "login", actor.label, {"user": actor.id, "peer": context.peer()},
                         by=actor.label)
        return access_pb2.UserInfo(id=actor.id, name=actor.name, roles=sorted(actor.roles), units=sorted(actor.units))

    def RequestConsultation(self, request, context):
        return _consultation(access.file_request(self.archive, self._actor(context), request.archive_no,
                                                 request.purpose, request.days, request.export))

    def DecideConsultation(self, request, context):
        return _consultation(access.decide(self.archive, self._actor(context), request.id, request.approve,
                                           request.reason, request.what or "view"))

    def RequestExport(self, request, context):
        return _consultation(access.request_export(self.archive, self._actor(context), request.id))

    def ListConsultations(self, request, context):
        rows = access.listing(self.archive, self._actor(context))
        return access_pb2.ConsultationList(consultations=[_consultation(r) for r in rows])

    def ListMaterials(self, request, context):
        rows = access.materials(self.archive, self._actor(context), request.archive_no,
                                request.consultation_id or None)
        return access_pb2.MaterialList(materials=[
            access_pb2.Material(item=r["item"], title=r["title"], date_formed=r["date_formed"] or "",
                                page_count=r["page_count"], version=r["version"]) for r in rows])

    def GetPage(self, request, context):
        row, blob = access.page(self.archive, self._actor(context), request.archive_no, request.item, request.n,
                                request.consultation_id or None, request.export)
        with blob as f:
            offset, data = 0, f.read(CHUNK_BYTES)
            yield access_pb2.PageChunk(media_type=row["media_type"], sha256=row["sha256"], offset=0, data=data)
            while data:
                offset += len(data)
                data = f.read(CHUNK_BYTES)
                if data:
                    yield access_pb2.PageChunk(offset=offset, data=data)
