"""Reading the archive from the outside, through the gRPC API: consultations, grants, 回避, exports,
separation of duties — every refusal and every read in the audit log."""

import hashlib
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from central import access, audit, gate, users
from central.errors import CentralError
from quire.v1 import access_pb2, access_pb2_grpc
from station.scan import scan
from station.sync import sync
from station.transport import TLS_NAME
from tests.conftest import make_station, register


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


@pytest.fixture
def people(central, station):
    """Two dossiers of unit-a catalogued, and the people who work with them."""
    archive, address = central
    scan(station, {"archive_no": "D-1", "name": "张三"}, {"item": "4-1-2", "title": "考核材料"},
         "synthetic:seed=1,sheets=1")
    scan(station, {"archive_no": "D-2", "name": "李四"}, {"item": "1-1", "title": "简历"}, "synthetic:seed=2,sheets=1")
    scan(station, {"archive_no": "D-3", "name": "李五"}, {"item": "1-1", "title": "简历"}, "synthetic:seed=3,sheets=1")
    assert len(sync(station).committed) == 3
    tokens = {
        "admin": users.add(archive, "admin", "系统管理员", ["admin"], ["*"]),
        "sec-a": users.add(archive, "sec-a", "保密员甲", ["security_officer"], ["unit-a"]),
        "sec-b": users.add(archive, "sec-b", "保密员乙", ["security_officer"], ["unit-b"]),
        "li": users.add(archive, "li", "李四", ["reader"], ["unit-a"], own_archive_no="D-2"),
        "auditor": users.add(archive, "auditor", "审计员", ["auditor"], ["*"]),
    }
    users.relate(archive, "li", "D-3", "sibling")
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(archive.tls.cert_pem),
                                  options=[("grpc.ssl_target_name_override", TLS_NAME)])
    stub = access_pb2_grpc.ArchiveAccessStub(channel)

    def call(who: str | None, method: str, **fields):
        request_type = {"Whoami": access_pb2.WhoamiRequest, "RequestConsultation": access_pb2.ConsultationRequest,
                        "DecideConsultation": access_pb2.ConsultationDecision,
                        "RequestExport": access_pb2.ConsultationRef,
                        "ListConsultations": access_pb2.ListConsultationsRequest,
                        "ListMaterials": access_pb2.ListMaterialsRequest, "GetPage": access_pb2.GetPageRequest}
        metadata = [("authorization", f"Bearer {tokens[who]}")] if who else []
        result = getattr(stub, method)(request_type[method](**fields), metadata=metadata, timeout=10)
        return b"".join(c.data for c in result) if method == "GetPage" else result

    yield archive, call
    channel.close()


def refused(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value


def denials(archive) -> list[dict]:
    return [e for e in audit.entries(archive) if e["event"] == "access.denied"]


def test_a_reader_without_a_grant_is_refused_and_the_refusal_logged(people):
    archive, call = people
    error = refused(call, "li", "GetPage", archive_no="D-1", item="4-1-2", n=1)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no approved consultation of dossier D-1" in error.details()
    assert refused(call, "li", "ListMaterials", archive_no="D-1").code() == grpc.StatusCode.PERMISSION_DENIED
    logged = denials(archive)
    assert [(e["by"], e["action"], e["archive_no"]) for e in logged] == [
        ("user:li", "content.view", "D-1"), ("user:li", "catalogue.read", "D-1")]


def test_an_approved_consultation_lets_the_reader_view_and_every_view_is_logged(people):
    archive, call = people
    c = call("li", "RequestConsultation", archive_no="D-1", purpose="干部考察", days=7)
    assert c.state == "requested"
    # Only a security officer over the dossier's unit decides, and a reader never decides.
    assert "no authority over unit unit-a" in refused(call, "sec-b", "DecideConsultation", id=c.id,
                                                       approve=True).details()
    assert refused(call, "li", "DecideConsultation", id=c.id, approve=True).code() == grpc.StatusCode.PERMISSION_DENIED
    granted = call("sec-a", "DecideConsultation", id=c.id, approve=True, reason="考察需要")
    assert granted.state == "approved" and granted.expires_at
    materials = call("li", "ListMaterials", archive_no="D-1", consultation_id=c.id).materials
    assert [(m.item, m.title, m.page_count) for m in materials] == [("4-1-2", "考核材料", 2)]
    data = call("li", "GetPage", archive_no="D-1", item="4-1-2", n=1, consultation_id=c.id)
    stored = archive.catalogue.one("SELECT p.sha256 FROM pages p JOIN materials m ON m.id = p.material_id"
                                   " WHERE m.archive_no = 'D-1' AND p.n = 1")["sha256"]
    assert hashlib.sha256(data).hexdigest() == stored
    (view,) = [e for e in audit.entries(archive) if e["event"] == "content.view"]
    assert (view["by"], view["archive_no"], view["page"], view["consultation"]) == ("user:li", "D-1", 1, c.id)


def test_exporting_needs_its_own_approval(people):
    archive, call = people
    c = call("li", "RequestConsultation", archive_no="D-1", purpose="出具证明", days=3)
    call("sec-a", "DecideConsultation", id=c.id, approve=True)
    error = refused(call, "li", "GetPage", archive_no="D-1", item="4-1-2", n=1, consultation_id=c.id, export=True)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "exporting or copying needs its own approval" in error.details()
    assert denials(archive)[-1]["action"] == "content.export"
    assert call("li", "RequestExport", id=c.id).export_state == "requested"
    assert call("sec-a", "DecideConsultation", id=c.id, approve=True, what="export").export_state == "approved"
    assert call("li", "GetPage", archive_no="D-1", item="4-1-2", n=2, consultation_id=c.id, export=True)
    (export,) = [e for e in audit.entries(archive) if e["event"] == "content.export"]
    assert (export["page"], export["consultation"]) == (2, c.id)


def test_an_expired_grant_is_refused(people, monkeypatch):
    archive, call = people
    c = call("li", "RequestConsultation", archive_no="D-1", purpose="干部考察", days=2)
    call("sec-a", "DecideConsultation", id=c.id, approve=True)
    later = (datetime.now(timezone.utc) + timedelta(days=2, minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    monkeypatch.setattr(gate, "utcnow", lambda: later)  # the clock permissions are decided by, two days on
    error = refused(call, "li", "GetPage", archive_no="D-1", item="4-1-2", n=1, consultation_id=c.id)
    assert "expired" in error.details() and "file a new request" in error.details()
    assert denials(archive)[-1]["consultation"] == c.id


def test_nobody_consults_their_own_dossier_or_a_relatives(people):
    archive, call = people
    own = refused(call, "li", "RequestConsultation", archive_no="D-2", purpose="看看", days=1)
    relative = refused(call, "li", "RequestConsultation", archive_no="D-3", purpose="看看", days=1)
    assert "their own (回避)" in own.details() and "a relative (回避)" in relative.details()
    assert [e["archive_no"] for e in denials(archive)] == ["D-2", "D-3"]
    assert archive.catalogue.query("SELECT * FROM consultations") == []


def test_the_administrator_cannot_read_archive_content(people):
    archive, call = people
    assert call("admin", "Whoami").roles == ["admin"]
    for method, fields in (("GetPage", dict(archive_no="D-1", item="4-1-2", n=1)),
                           ("ListMaterials", dict(archive_no="D-1"))):
        assert refused(call, "admin", method, **fields).code() == grpc.StatusCode.PERMISSION_DENIED
    assert [e["by"] for e in denials(archive)] == ["user:admin", "user:admin"]
    logins = [e for e in audit.entries(archive) if e["event"] == "login"]
    assert [e["user"] for e in logins] == ["admin"]


def test_missing_or_forged_tokens_are_refused(people):
    archive, call = people
    assert refused(call, None, "Whoami").code() == grpc.StatusCode.UNAUTHENTICATED
    stored = archive.catalogue.one("SELECT token_sha256 FROM users WHERE id = 'li'")["token_sha256"]
    assert len(stored) == 64 and "qt1" not in stored  # only a hash of the secret is at rest
    users.reissue_token(archive, "li")  # the old token stops working at once
    assert refused(call, "li", "Whoami").code() == grpc.StatusCode.UNAUTHENTICATED
    assert [(e["user"], e["token"]) for e in audit.entries(archive) if e["event"] == "login.refused"] == [
        (None, "missing"), ("li", "refused")]


def test_administrator_security_officer_and_auditor_are_separate_people(archive):
    with pytest.raises(CentralError, match="三员分立"):
        users.add(archive, "x", "x", ["admin", "auditor"], ["*"])
    with pytest.raises(CentralError, match="三员分立"):
        users.add(archive, "y", "y", ["security_officer", "reader"], ["*"])


def test_a_station_cannot_upload_into_another_units_dossier(tmp_path, central, people):
    archive, address = central
    st_b = register(archive, address, make_station(tmp_path / "st-b", address, station_id="st-b"), unit="unit-b")
    try:
        scan(st_b, {"archive_no": "D-1"}, {"item": "9-2-1", "title": "奖励"}, "synthetic:seed=5,sheets=1")
        report = sync(st_b)
        assert len(sync(st_b).rejected) == 0  # asked again at the next sync: still refused, logged once
    finally:
        st_b.close()
    (reason,) = report.rejected.values()
    assert "dossier D-1 belongs to unit unit-a; station st-b uploads only into unit unit-b" in reason
    assert archive.catalogue.query("SELECT item FROM materials WHERE archive_no = 'D-1'") == [{"item": "4-1-2"}]
    assert archive.catalogue.query("SELECT * FROM bundles WHERE station_id = 'st-b'") == []
    (logged,) = [e for e in audit.entries(archive) if e["event"] == "upload.refused"]
    assert (logged["station_id"], logged["archive_no"], logged["dossier_unit"]) == ("st-b", "D-1", "unit-a")
