"""Blobs in an S3-compatible bucket, against a real SeaweedFS: written once, read by range, uploads
resumed by another process after a kill -9, and a config an operator can get right."""

import hashlib
import json
import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from central import config
from central.archive import open_archive
from central.store.blobs import sm3
from central.store.blobs_s3 import S3BlobStore, S3Upload
from central.errors import BlobRejected, ConfigError, StoreUnavailable, UploadDamaged, WrongOffset
from tests.s3server import SeaweedS3, requests_sent


@pytest.fixture
def s3_store(s3_server, tmp_path):
    """An S3 blob store on a fresh prefix of the session's bucket."""
    creds = s3_server.credentials_file(tmp_path / "s3.toml")
    store = S3BlobStore(f"s3://{s3_server.bucket}/{uuid.uuid4().hex}", creds)
    yield store
    store.close()


def test_seaweedfs_refuses_a_second_conditional_write_and_keeps_objects_across_kill_9(tmp_path):
    server = SeaweedS3(tmp_path / "weed").start()
    client = server.client()
    try:
        client.put_object(Bucket=server.bucket, Key="k", Body=b"first", IfNoneMatch="*")
        assert _status(client, "k", b"second") == 412
        server.kill()
        server.start()
        assert _read_once_up(client, "k") == b"first"
    finally:
        client.close()
        server.stop()


def _read_once_up(client, key: str, within_s: float = 60.0) -> bytes:
    """The object's bytes once the restarted store serves reads: its S3 gateway answers before its volume
    has registered again, and meanwhile a read gets 500 InternalError (seen under load). A missing object
    (404) fails at once."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return client.get_object(Bucket=SeaweedS3.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] < 500 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _status(client, key: str, body: bytes) -> int:
    """The HTTP status of a conditional put (the error is dropped here, with the connection it holds)."""
    try:
        return client.put_object(Bucket=SeaweedS3.bucket, Key=key, Body=body,
                                 IfNoneMatch="*")["ResponseMetadata"]["HTTPStatusCode"]
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_blob_is_written_once_and_a_different_object_under_its_name_is_never_overwritten(s3_store):
    data = os.urandom(3000)
    sha = s3_store.put(data)
    assert s3_store.put(data) == sha   # the 412 of the second write: the same bytes, fine
    assert s3_store.stat(sha) == 3000 and s3_store.has(sha)
    other = hashlib.sha256(b"x").hexdigest()
    s3_store.client.put_object(Bucket=s3_store.bucket, Key=s3_store._key(other), Body=b"not x")
    with pytest.raises(BlobRejected, match="not overwritten .* restore the blob"):
        s3_store.put(b"x")
    with s3_store.open(other) as fh:
        assert fh.read() == b"not x"


def test_a_stored_blob_reads_by_range_and_seeks_as_a_file_does(s3_store, tmp_path):
    buf = io.BytesIO()
    Image.new("L", (300, 200), 128).save(buf, "TIFF", dpi=(300, 300))
    sha = s3_store.put(buf.getvalue())
    with s3_store.open(sha) as fh, Image.open(fh) as im:
        assert im.size == (300, 200) and round(im.info["dpi"][0]) == 300
    with s3_store.open(sha) as fh:
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == buf.getvalue()[-10:]
    assert s3_store.rehash(sha) == (sha, sm3(buf.getvalue()).hexdigest())
    missing = "0" * 64
    assert s3_store.stat(missing) is None and s3_store.rehash(missing) is None
    with pytest.raises(FileNotFoundError, match=f"blob {missing} is not in the object store"):
        s3_store.open(missing)


def test_looking_at_a_large_page_s_header_fetches_its_head_not_the_page(s3_store, monkeypatch):
    buf = io.BytesIO()
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(buf, "TIFF", dpi=(400, 400))
    data = buf.getvalue()
    sha = s3_store.put(data)
    sent = requests_sent(monkeypatch)
    with s3_store.open(sha) as fh, Image.open(fh) as im:
        assert im.size == (1000, 1000) and round(im.info["dpi"][0]) == 400
    fetched = sum(size for name, size in sent if name == "GetObject")
    assert 0 < fetched <= 256 << 10, f"{fetched} bytes fetched to read the header of a {len(data)}-byte page"
    with s3_store.open(sha) as fh:  # read on from the head, after seeks, and whole: the same bytes
        assert fh.read(100_000) == data[:100_000]
        fh.seek(2_000_000)
        assert fh.read(5) == data[2_000_000:2_000_005]
        assert fh.read() == data[2_000_005:]
        fh.seek(0)
        assert fh.read() == data


def test_an_empty_blob_opens_and_reads_as_empty(s3_store):
    sha = s3_store.put(b"")
    with s3_store.open(sha) as fh:
        assert fh.read() == b""


def test_an_upload_larger_than_is_held_in_memory_is_stored_whole(s3_store, monkeypatch):
    monkeypatch.setattr("central.store.blobs_s3._Held.memory_bytes", 300_000)
    data = os.urandom(1_000_000)
    sha = hashlib.sha256(data).hexdigest()
    upload = s3_store.open_upload("st-1", sha, len(data))
    for at in range(0, len(data), 128_000):
        upload.append(at, bytearray(data[at:at + 128_000]))
    assert s3_store.finish_many([upload]) == {}
    assert s3_store.rehash(sha) == (sha, sm3(data).hexdigest())


RESUMER = textwrap.dedent("""
    import sys, time
    from central.store.blobs_s3 import S3BlobStore, S3Upload
    S3Upload.part_bytes = 1 << 20
    url, creds, sha, limit, path = sys.argv[1:6]
    data = open(path, "rb").read()
    store = S3BlobStore(url, creds)
    upload = store.open_upload("st-1", sha, int(limit))
    for at in range(0, 2_500_000, 100_000):
        upload.append(at, data[at:at + 100_000])
    print("appended", flush=True)
    time.sleep(600)
""")


def test_an_upload_cut_by_kill_9_in_one_process_is_resumed_in_another(s3_server, s3_store, tmp_path):
    data = os.urandom(3_000_000)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "data").write_bytes(data)
    url = f"s3://{s3_store.bucket}/{s3_store.prefix.rstrip('/')}"
    proc = subprocess.Popen([sys.executable, "-c", RESUMER, url, str(tmp_path / "s3.toml"), sha, str(len(data)),
                             str(tmp_path / "data")], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert proc.stdout.readline().strip() == "appended"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    # 2.5 MB arrived; a part was kept each time 1 MiB or more had (11 chunks of 100 kB): two parts,
    # 2.2 MB. The 300 kB after them died with the process.
    kept = 2_200_000
    assert s3_store.committed_size("st-1", sha) == kept
    upload = s3_store.open_upload("st-1", sha, len(data))
    assert upload.size == kept
    with pytest.raises(WrongOffset, match=f"write at offset 2500000 but {kept} bytes are committed"):
        upload.append(2_500_000, data[2_500_000:])
    upload.append(upload.size, data[upload.size:])
    assert s3_store.finish_many([upload]) == {}
    with s3_store.open(sha) as fh:
        assert fh.read() == data
    assert upload.sm3 == sm3(data).hexdigest()
    assert s3_store.committed_size("st-1", sha) == 0   # the staged parts are gone


def test_two_processes_holding_the_same_upload_cannot_both_extend_it(s3_store, monkeypatch):
    monkeypatch.setattr(S3Upload, "part_bytes", 1000)
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    first = s3_store.open_upload("st-1", sha, len(data))
    second = s3_store.open_upload("st-1", sha, len(data))   # a retry that reached another process
    first.append(0, data[:1000])
    with pytest.raises(WrongOffset, match="another archive process already holds bytes from offset 0"):
        second.append(0, data[:1000])
    first.append(1000, data[1000:])
    assert s3_store.finish_many([first]) == {}
    with s3_store.open(sha) as fh:
        assert fh.read() == data


def test_a_damaged_upload_is_discarded_with_its_staged_parts(s3_store, monkeypatch):
    monkeypatch.setattr(S3Upload, "part_bytes", 1000)
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    upload = s3_store.open_upload("st-1", sha, len(data))
    upload.append(0, data[:-1] + bytes([data[-1] ^ 1]))
    (refusal,) = s3_store.finish_many([upload]).values()
    assert isinstance(refusal, UploadDamaged) and "send it again from offset 0" in str(refusal)
    assert not s3_store.has(sha) and s3_store.committed_size("st-1", sha) == 0


def _home(tmp_path, text: str):
    home = tmp_path / "central"
    home.mkdir(exist_ok=True)
    (home / "central.toml").write_text(text)
    return home


def test_a_credentials_file_others_can_read_is_refused_saying_how_to_fix_it(s3_server, tmp_path):
    home = _home(tmp_path, f'blobs = "s3://{s3_server.bucket}/p"\nblobs_credentials = "s3.toml"\n')
    creds = s3_server.credentials_file(home / "s3.toml")
    os.chmod(creds, 0o640)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0640\).*chmod 600"):
        open_archive(config.load(home))


def test_a_blobs_setting_that_is_not_an_s3_url_is_refused_by_name(tmp_path):
    home = _home(tmp_path, 'blobs = "/srv/quire/blobs"\n')
    with pytest.raises(ConfigError, match=r"blobs: must be .*s3://BUCKET/PREFIX"):
        config.load(home)


def test_an_unreachable_bucket_is_refused_at_open_naming_what_to_check(s3_server, tmp_path):
    home = _home(tmp_path, 'blobs = "s3://no-such-bucket/p"\nblobs_credentials = "s3.toml"\n')
    s3_server.credentials_file(home / "s3.toml")
    with pytest.raises(ConfigError, match="bucket no-such-bucket at http://127.0.0.1:.* cannot be reached.*"
                                          "check the endpoint, the credentials"):
        open_archive(config.load(home))


def test_the_environment_supplies_endpoint_and_keys_when_no_file_is_named(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    home = _home(tmp_path, f'blobs = "s3://{s3_server.bucket}/{uuid.uuid4().hex}"\n')
    archive = open_archive(config.load(home))
    try:
        sha = archive.blobs.put(b"page")
        assert archive.blobs.where(sha).startswith(f"s3://{s3_server.bucket}/")
        assert not (home / "blobs").exists() or not any((home / "blobs").rglob("*" + sha))
    finally:
        archive.close()


def _read_only_identity(server: SeaweedS3, path) -> tuple[str, str, object]:
    """Give ``server`` (before it starts) a second access key that may read and list but not write, and a
    0600 credentials file holding it: the archive's writes are then answered 403 with an XML body."""
    import secrets

    access, secret = "readonly" + secrets.token_hex(4), secrets.token_hex(20)
    identities = json.loads(server.identities.read_text())
    identities["identities"].append({"name": "quire-read-only", "actions": ["Read", "List"],
                                     "credentials": [{"accessKey": access, "secretKey": secret}]})
    server.identities.write_text(json.dumps(identities))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f'endpoint_url = "{server.endpoint}"\naccess_key_id = "{access}"\n'
                 f'secret_access_key = "{secret}"\nregion = "us-east-1"\n')
    return access, secret, path


def test_a_store_refusing_writes_tells_the_station_the_status_and_keeps_its_detail_in_the_service_log(
        tmp_path, caplog):
    from central import audit, profile
    from central.server import build_server
    from station.scan import scan
    from station.sync import sync
    from tests.conftest import make_station, register

    server = SeaweedS3(tmp_path / "weed")
    home = tmp_path / "central"
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "p150.toml").write_text('format = "quire.profile/1"\nname = "p150"\nversion = 1\n'
                                              'extends = "gbt33870"\n[resolution]\nmin_dpi = 150\n')
    _, secret, _ = _read_only_identity(server, home / "s3.toml")
    prefix = uuid.uuid4().hex
    (home / "central.toml").write_text(f'blobs = "s3://{server.bucket}/{prefix}"\nblobs_credentials = "s3.toml"\n')
    server.start()
    archive = open_archive(config.load(home))
    grpc_server = station = None
    try:
        profile.set_default(archive, "p150")
        grpc_server, port = build_server(archive, "127.0.0.1:0")
        grpc_server.start()
        address = f"127.0.0.1:{port}"
        station = register(archive, address, make_station(tmp_path / "st", address, dpi=150, sync_retry_span_s=0))
        bundle = scan(station, {"archive_no": "D-1", "name": "王五"}, {"item": "1-1", "title": "履历表"},
                      "synthetic:seed=1,sheets=1").bundle_id
        caplog.set_level("INFO", logger="quire.central")
        told = sync(station).failed[bundle]
        assert "the object store refused to store blob" in told and "(HTTP 403)" in told
        assert "check the object store's credentials" in told
        private = (server.endpoint, f"127.0.0.1:{server.ports['s3.port']}", server.bucket, prefix, "<", "Signature")
        assert not [word for word in private if word in told], told
        # An outage of the archive's store refuses nobody: nothing of it in the append-only audit log.
        logged = json.dumps(audit.entries(archive), ensure_ascii=False)
        assert "call.refused" not in logged and not [word for word in private if word in logged]
        # The service log has what the administrator needs (where, which status, the store's code), no secret.
        detail = [r.getMessage() for r in caplog.records if "object store failed to store blob" in r.getMessage()]
        assert detail and f"/{server.bucket}/{prefix}/blobs/" in detail[0] and "403" in detail[0]
        assert "Code AccessDenied" in detail[0]
        assert not any(secret in r.getMessage() or "<?xml" in r.getMessage() for r in caplog.records)
    finally:
        if station is not None:
            station.close()
        if grpc_server is not None:
            grpc_server.stop(grace=None).wait()
        archive.close()
        server.stop()


def test_a_blob_read_while_the_store_is_down_says_the_read_failed_not_that_a_look_up_did(tmp_path):
    server = SeaweedS3(tmp_path / "weed").start()
    store = S3BlobStore(f"s3://{server.bucket}/{uuid.uuid4().hex}", server.credentials_file(tmp_path / "s3.toml"))
    try:
        sha = store.put(b"a page")
        server.stop()
        # Only an empty object's 416 is followed by a HEAD: the GET's own failure is what is reported.
        with pytest.raises(StoreUnavailable, match=f"did not answer when asked to read blob {sha[:12]}"):
            store.open(sha)
    finally:
        store.close()
        server.stop()


def test_temporary_credentials_are_asked_for_again_before_boto3_s_expiry_not_after_it():
    from datetime import datetime, timedelta, timezone

    from botocore.credentials import Credentials, RefreshableCredentials

    from central.store.blobs_s3 import _credential_provider

    issued = []

    def from_sts():   # what an STS/SSO source gives: keys good for 3 minutes
        issued.append(datetime.now(timezone.utc) + timedelta(minutes=3))
        return {"access_key": "ASIATEST", "secret_key": "secret", "token": "session", "expiry_time":
                issued[-1].isoformat()}

    temporary = _credential_provider(RefreshableCredentials.create_from_metadata(from_sts(), from_sts, "sts"))()
    assert temporary["token"] == "session"
    assert datetime.now(timezone.utc) <= temporary["expires_at"] <= issued[-1] - timedelta(minutes=1)
    lasting = _credential_provider(Credentials("AKIATEST", "secret"))()   # keys from a file: asked again in 5 min
    assert timedelta(minutes=4) < lasting["expires_at"] - datetime.now(timezone.utc) <= timedelta(minutes=5)


class _DamagingRelay:
    """A TCP relay on 127.0.0.1 in front of the store that flips one bit in the body of the first put of a
    blob passing through it, as a fault on the way (a bad NIC, a broken proxy) would."""

    def __init__(self, port: int):
        self.target, self.flipped = port, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)   # a closed listener does not wake a thread blocked in accept()
        self.closed = threading.Event()
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, name="damaging-relay")]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for target, args in ((self._requests, (client, upstream)), (self._answers, (upstream, client))):
                self.threads.append(threading.Thread(target=target, args=args, name="damaging-relay"))
                self.threads[-1].start()

    def _answers(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        """Request by request (headers, then Content-Length bytes), each passed on whole."""
        held = b""
        try:
            while True:
                while b"\r\n\r\n" not in held:
                    if not (data := src.recv(1 << 16)):
                        return
                    held += data
                head, _, held = held.partition(b"\r\n\r\n")
                found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                length = int(found.group(1)) if found else 0
                while len(held) < length:
                    if not (data := src.recv(1 << 16)):
                        return
                    held += data
                body, held = bytearray(held[:length]), held[length:]
                if head.startswith(b"PUT ") and b"/blobs/" in head.split(b"\r\n", 1)[0] and not self.flipped:
                    body[length // 2] ^= 0x01
                    self.flipped += 1
                dst.sendall(head + b"\r\n\r\n" + bytes(body))
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        self.threads[0].join(timeout=10)
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(timeout=10)


def test_a_page_damaged_on_its_way_to_the_store_is_refused_there_and_never_kept(s3_server, tmp_path):
    """Each put carries a CRC-64 of its body (no SHA-256 signature of it): the store checks it and keeps
    nothing that does not match, so a page is never stored damaged under its name."""
    relay = _DamagingRelay(s3_server.ports["s3.port"])
    creds = s3_server.credentials_file(tmp_path / "s3.toml")
    creds.write_text(creds.read_text().replace(s3_server.endpoint, relay.endpoint))
    store = S3BlobStore(f"s3://{s3_server.bucket}/{uuid.uuid4().hex}", creds)
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with pytest.raises(StoreUnavailable, match="HTTP 400"):
            store.put(data)
        assert relay.flipped == 1
        assert store.stat(digest) is None
        assert store.put(data) == digest   # sent again, undamaged: stored
        assert store.rehash(digest) == (digest, sm3(data).hexdigest())
    finally:
        store.close()
        relay.close()
