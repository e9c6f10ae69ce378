"""Blobs in an S3-compatible bucket (``blobs = "s3://bucket/prefix"``), behind the same interface as the
local directory: written once with conditional puts, uploads resumable by any archive process.

Keys under the prefix::

    blobs/ab/ab12…            one stored blob, named by its SHA-256, written with If-None-Match: *
    uploads/ST/ab12…/000…0    a partial upload by station ST, as parts each named by its start offset

A partial upload is kept as staged part objects rather than as an S3 multipart upload because
another process must be able to resume it: it has to hash the bytes already received (SHA-256
and SM3 are computed as bytes arrive, and hash state cannot be handed between processes), and the
parts of an unfinished multipart upload cannot be read back. Staged parts can be read, are listed
to find the committed offset, and each is written with If-None-Match: * so two processes that
both believe they hold the same upload cannot both extend it from the same offset. Multipart
uploads also need parts of at least 5 MiB but the last, and station chunks are smaller.

Requests go through obstore (Rust's object_store): botocore spent about 2.5 ms of CPU building,
signing and parsing each one, obstore 0.15-0.5 ms (bench/s3client.py). boto3 still opens the store:
it resolves the credentials as AWS tools do and checks the bucket once. Every request still costs, so a
page asks for as few as it can: a station's partial uploads sit under one prefix, so an
Offer learns where all of its missing pages stand from one listing; a Write that starts at offset 0
lists nothing (the station was told nothing is kept, and a part another process did keep from
offset 0 refuses the stage that would overwrite it), only one that resumes lists its parts.
"""

import hashlib
import io
import logging
import os
import re
import stat
import tempfile
import threading
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import boto3
import obstore as obs
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from obstore.store import S3Store
from pydantic import StrictStr

from quire import settings
from quire.settings import Settings

from .blobs import BlobStore, sm3
from ..errors import BlobRejected, ConfigError, StoreUnavailable, WrongOffset

log = logging.getLogger("quire.central")

_REASK = timedelta(minutes=5)          # obstore asks for the credentials again at least this often
_EXPIRY_MARGIN = timedelta(minutes=1)  # and this long before temporary ones expire
_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?")


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/' or empty) of ``s3://bucket/prefix``."""
    found = _URL.fullmatch(url)
    if not found:
        raise ConfigError(f"blobs = {url!r} is not s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case "
                          "letters, digits, dots and hyphens); fix central.toml")
    prefix = (found.group(2) or "").strip("/")
    return found.group(1), prefix + "/" if prefix else ""


class Credentials(Settings):
    """What a credentials file (TOML, mode 0600) may say."""

    endpoint_url: StrictStr | None = None
    access_key_id: StrictStr
    secret_access_key: StrictStr
    session_token: StrictStr | None = None
    region: StrictStr = "us-east-1"


def load_credentials(path: Path) -> Credentials:
    """The object store's endpoint and keys from ``path``; refuse a file others may read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"blobs_credentials {path}: cannot read it ({exc.strerror}); create it (mode 0600) "
                          "or leave the setting out to take the AWS_* environment") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"blobs_credentials {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                          f"it holds the object store's secret key: run 'chmod 600 {path}'")
    return settings.validated(Credentials, settings.read_toml(path, ConfigError), str(path), ConfigError)


def _unavailable(what: str, exc: Exception, where: str = "") -> StoreUnavailable:
    """The store failed: the caller (a station, through gRPC, and the audit log) learns only whether it
    answered and with which HTTP status, and what to do; the service log gets the detail (endpoint,
    bucket, key, the store's error code), never the body of its answer (a signature error's XML
    carries the string that was signed)."""
    status = _http_status(exc)
    log.warning("the object store failed to %s%s: %s", what, f" ({where})" if where else "", _detail(exc))
    if status in (401, 403):
        return StoreUnavailable(f"the object store refused to {what} (HTTP {status}); what arrived is kept — "
                                "retry later (administrator: check the object store's credentials and their "
                                "rights on the bucket; the service log has the detail)")
    kind = f"answered HTTP {status}" if status else "did not answer"
    return StoreUnavailable(f"the object store {kind} when asked to {what}; what arrived is kept — retry when "
                            "the object store answers again (administrator: the service log has the detail)")


def _http_status(exc: Exception) -> int | None:
    """The HTTP status the store answered with, None when it did not answer."""
    if isinstance(exc, ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    found = re.search(r"status code:? (\d{3})\b", str(exc)) if isinstance(exc, BaseError) else None
    return int(found.group(1)) if found else None


def _detail(exc: Exception) -> str:
    """One line for the service log: obstore's account of the request (method, URL, status) and the
    store's error code and message, without the rest of its answer; boto3's error as it words it."""
    if not isinstance(exc, BaseError):
        return f"{type(exc).__name__}: {exc}"
    text = " ".join(str(exc).split())
    head = re.split(r"<\?xml|<Error| Debug source:", text, maxsplit=1)[0].strip()
    said = [f"{tag} {found.group(1)}" for tag in ("Code", "Message")
            if (found := re.search(rf"<{tag}>([^<]{{0,200}})</{tag}>", text))]
    return "; ".join([f"{type(exc).__name__}: {head[:600]}", *said])


def _credential_provider(found):
    """What obstore asks for credentials: boto3's current ones, asked for again within 5 minutes, or by
    the time boto3's temporary ones expire (less a minute), whichever comes first."""

    def credentials():
        frozen = found.get_frozen_credentials()   # boto3 renews temporary credentials near their expiry here
        now = datetime.now(timezone.utc)
        expires_at = now + _REASK
        expiry = getattr(found, "_expiry_time", None)   # RefreshableCredentials keep their expiry only here
        if isinstance(expiry, datetime):
            expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=timezone.utc)
            expires_at = min(expires_at, max(now, expiry - _EXPIRY_MARGIN))
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key, "token": frozen.token,
                "expires_at": expires_at}
    return credentials


def _obstore(session: boto3.session.Session, client, bucket: str) -> S3Store:
    """An obstore client for ``bucket`` with boto3's endpoint, region and credentials (asked of boto3 again
    as they near expiry, so temporary ones are renewed as boto3 renews them)."""
    found = session.get_credentials()   # what boto3 resolves: the file's keys, or AWS_* / profiles
    if found is None:
        raise ConfigError("no credentials for the object store: name blobs_credentials in central.toml or set "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    endpoint = client.meta.endpoint_url
    # Bodies are not SHA-256 signed (a second hash of every byte): a CRC-64 header guards each put on
    # the wire, and our SHA-256 and SM3 of every blob are checked anyway.
    return S3Store(bucket, endpoint=endpoint,
                   region=client.meta.region_name, virtual_hosted_style_request=False, unsigned_payload=True,
                   checksum_algorithm="crc64nvme", credential_provider=_credential_provider(found),
                   client_options={"allow_http": endpoint.startswith("http://"), "connect_timeout": "5s",
                                   "timeout": "60s"},
                   retry_config={"max_retries": 4, "retry_timeout": timedelta(seconds=60)})


def _joined(parts: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The parts (offset, size, key) that join up from offset 0, in order (those past a gap left out)."""
    joined, end = [], 0
    for offset, size, key in sorted(parts):
        if offset != end:
            break
        joined.append((offset, size, key))
        end += size
    return joined


class S3BlobStore(BlobStore):
    """Blobs and partial uploads as objects in one bucket under one prefix."""

    def __init__(self, url: str, credentials: str | os.PathLike | None = None):
        self.bucket, self.prefix = parse_url(url)
        keys = load_credentials(Path(credentials)).model_dump() if credentials else {}
        region = keys.pop("region", None) or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        session = boto3.session.Session(
            region_name=region, aws_access_key_id=keys.get("access_key_id"),
            aws_secret_access_key=keys.get("secret_access_key"), aws_session_token=keys.get("session_token"))
        self.client = session.client(
            "s3", endpoint_url=keys.get("endpoint_url"),
            # Bodies are not SHA-256 signed (botocore signs every body over http, a second hash of every
            # byte): a CRC-32 header still guards each body on the wire, and our SHA-256 and SM3 of
            # every blob are checked anyway. Whole-object reads are not CRC-checked for the same reason.
            config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60,
                          max_pool_connections=32, response_checksum_validation="when_required",
                          s3={"addressing_style": "path", "payload_signing_enabled": False}))
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            endpoint = self.client.meta.endpoint_url
            self.client.close()
            detail = exc.response["Error"].get("Code") if isinstance(exc, ClientError) else str(exc)
            raise ConfigError(f"blobs = {url!r}: bucket {self.bucket} at {endpoint} cannot be reached ({detail}); "
                              "check the endpoint, the credentials (blobs_credentials or AWS_*) and that the "
                              "bucket exists") from None
        self.objects = _obstore(session, self.client, self.bucket)
        self._heads = _Heads()

    def _key(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256}"

    def _staging(self, station_id: str, sha256: str = "") -> str:
        """The prefix of one station's partial upload of a blob (of all its partial uploads without one).
        A station id starts with a letter or digit, so it is never '.' or '..' as a key segment."""
        return f"{self.prefix}uploads/{station_id}/{sha256}/" if sha256 else f"{self.prefix}uploads/{station_id}/"

    def where(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self._key(sha256)}"

    def stat(self, sha256: str) -> int | None:
        try:
            return obs.head(self.objects, self._key(sha256))["size"]
        except FileNotFoundError:
            return None
        except BaseError as exc:
            raise _unavailable(f"look up blob {sha256[:12]}", exc) from None

    def has(self, sha256: str) -> bool:
        return self.stat(sha256) is not None

    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def sample(self, limit: int, after: str = "") -> list[str]:
        # A blob's key sorts as its digest does (blobs/ab/ab12…): the listing goes on after the key of ``after``.
        start = {"StartAfter": self._key(after)} if after else {}
        try:
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}blobs/", MaxKeys=limit,
                                                 **start)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("list the stored blobs", exc, self.location()) from None
        names = (item["Key"].rsplit("/", 1)[-1] for item in listed.get("Contents", ()))
        return [name for name in names if re.fullmatch(r"[0-9a-f]{64}", name)][:limit]

    def open(self, sha256: str) -> BinaryIO:
        """The blob, read by ranged GETs: the first brings its head and size together (a page's header
        is mostly all that is read), later ones grow while reading goes on from where it stopped.

        A blob this process stored lately is opened on the head it kept when storing it (those bytes hashed
        to the name): a HEAD request says the object is still there, at the same size, and costs the store
        a quarter of a GET's CPU (SeaweedFS: about 0.4 ms against 1.6-2.2 ms, whatever the range)."""
        key = self._key(sha256)
        kept = self._heads.take(sha256)
        if kept is not None:
            head, size = kept
            stored = self.stat(sha256)
            if stored is None:
                raise FileNotFoundError(f"blob {sha256} is not in the object store ({self.where(sha256)})")
            if stored == size:
                return io.BufferedReader(_RangeReader(self, key, size, head), buffer_size=1 << 20)
        try:
            first = obs.get(self.objects, key, options={"range": (0, _RangeReader.head_bytes)})
            head, size = bytes(first.bytes()), first.meta["size"]
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {sha256} is not in the object store ({self.where(sha256)})") from None
        except BaseError as exc:
            if _http_status(exc) != 416:
                raise _unavailable(f"read blob {sha256[:12]}", exc) from None
            size = self.stat(sha256)  # 416: no byte 0 to range over, as in an empty object
            if size is None:
                raise FileNotFoundError(f"blob {sha256} is not in the object store ({self.where(sha256)})") from None
            if size:
                raise _unavailable(f"read blob {sha256[:12]}", exc) from None
            head = b""
        return io.BufferedReader(_RangeReader(self, key, size, head), buffer_size=1 << 20)

    def rehash(self, sha256: str, chunk_bytes: int = 1 << 20) -> tuple[str, str] | None:
        """SHA-256 and SM3 of the stored bytes, read in one streamed GET (None when missing)."""
        h256, h_sm3 = hashlib.sha256(), sm3()
        try:
            for chunk in obs.get(self.objects, self._key(sha256)).stream(min_chunk_size=chunk_bytes):
                h256.update(chunk)
                h_sm3.update(chunk)
        except FileNotFoundError:
            return None
        except BaseError as exc:
            raise _unavailable(f"read blob {sha256[:12]}", exc) from None
        return h256.hexdigest(), h_sm3.hexdigest()

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._put_once(digest, data, sm3(data).hexdigest())
        return digest

    def _put_once(self, sha256: str, body, sm3_hex: str) -> None:
        """Write the blob unless it is there: a 412 means another writer stored it first, which is
        fine when its bytes hash to the name; anything else there is reported, never overwritten."""
        try:
            obs.put(self.objects, self._key(sha256), body, mode="create", use_multipart=False,
                    attributes={"sha256": sha256, "sm3": sm3_hex})
            return
        except (AlreadyExistsError, PreconditionError):
            pass
        except BaseError as exc:
            raise _unavailable(f"store blob {sha256[:12]}", exc) from None
        found = self.rehash(sha256)
        if found is None or found[0] != sha256:
            raise BlobRejected(f"blob {sha256[:12]}: the object store already holds {self.where(sha256)} but its "
                               f"bytes hash to {found[0] if found else 'nothing'}; it was not overwritten — run "
                               "'quire-central verify' and restore the blob from a backup")

    # Partial uploads.

    def _listed(self, prefix: str, what: str) -> list[tuple[str, int]]:
        """(key after ``prefix``, size) of every object under ``prefix``."""
        found = []
        try:
            for page in obs.list(self.objects, prefix, chunk_size=1000):
                found += [(o["path"][len(prefix):], o["size"]) for o in page]
        except BaseError as exc:
            raise _unavailable(f"list {what}", exc) from None
        return found

    def _parts(self, station_id: str, sha256: str) -> list[tuple[int, int, str]]:
        """(offset, size, key) of the staged parts that join up from offset 0, in order."""
        staging = self._staging(station_id, sha256)
        listed = self._listed(staging, f"the partial upload of blob {sha256[:12]}")
        return _joined([(int(name), size, staging + name) for name, size in listed if name.isdigit()])

    def committed_size(self, station_id: str, sha256: str) -> int:
        return sum(size for _, size, _ in self._parts(station_id, sha256))

    def committed_sizes(self, station_id: str, digests: list[str]) -> list[int]:
        """Where each of the station's partial uploads of ``digests`` stands, from one listing of all of them."""
        if len(digests) < 2:
            return [self.committed_size(station_id, sha) for sha in digests]
        staging, found = self._staging(station_id), {}
        for name, size in self._listed(staging, f"the partial uploads of station {station_id}"):
            sha, _, offset = name.partition("/")
            if offset.isdigit():
                found.setdefault(sha, []).append((int(offset), size, staging + name))
        return [sum(size for _, size, _ in _joined(found.get(sha, []))) for sha in digests]

    def open_upload(self, station_id: str, sha256: str, limit: int) -> "S3Upload":
        return S3Upload(self, station_id, sha256, limit)

    def _discard(self, station_id: str, sha256: str) -> None:
        """Delete every staged part of one upload (those past a gap too)."""
        staging = self._staging(station_id, sha256)
        keys = [staging + name for name, _ in self._listed(staging, f"the partial upload of {sha256[:12]}")]
        if keys:
            try:
                obs.delete(self.objects, keys)
            except BaseError as exc:
                raise _unavailable(f"remove the partial upload of {sha256[:12]}", exc) from None

    def finish_many(self, uploads: list["S3Upload"]) -> dict[str, Exception]:
        refused = {}
        for upload in uploads:
            problem = upload.finish()
            if problem is not None:
                refused[upload.sha256] = problem
        return refused

    def close(self) -> None:
        self.client.close()
        self.objects = None   # its connections close with it


class S3Upload:
    """One partial upload held in the bucket: chunks must arrive at exactly the committed offset.

    Accepted bytes are staged as a part object every ``part_bytes`` and when the stream ends, so a
    crash loses at most that much, which the station re-sends from the offset the parts then reach.
    A blob finished within one stream goes to its final key in one put, never staged.
    """

    part_bytes = 8 << 20

    def __init__(self, store: S3BlobStore, station_id: str, sha256: str, limit: int):
        self.store, self.station_id, self.sha256, self.limit = store, station_id, sha256, limit
        self._hash, self._sm3 = hashlib.sha256(), sm3()
        self._all = _Held()  # every byte, for the final put
        self._pending: list[bytes] = []  # the chunks accepted since the last part, as received
        self._pending_bytes = 0
        self._staged = False
        self._size: int | None = None  # bytes accepted; None until the parts are listed or a write starts at 0
        self._stage_at = 0

    @property
    def size(self) -> int:
        """Bytes accepted: those the staged parts hold (listed on first asking), and those since."""
        if self._size is None:
            self._resume()
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value

    def _resume(self) -> None:
        """Take up what earlier streams (any process) left: list the parts and hash their bytes."""
        for _, _, key in self.store._parts(self.station_id, self.sha256):
            try:
                for chunk in obs.get(self.store.objects, key).stream(min_chunk_size=1 << 20):
                    self._take(bytes(chunk))
            except BaseError as exc:
                self._all.close()
                raise _unavailable(f"read the partial upload of blob {self.sha256[:12]}", exc) from None
            self._staged = True
        self._size = self._stage_at = self._all.size

    def _take(self, data: bytes) -> None:
        self._hash.update(data)
        self._sm3.update(data)
        self._all.write(data)

    def append(self, offset: int, data: bytes) -> int:
        """Append a chunk at exactly ``offset``; return the new size. Refuse gaps and overruns.

        A stream that starts at offset 0 starts afresh without listing the parts: the station was told
        nothing is kept (parts kept since, by a cut stream's process, refuse this one's first stage)."""
        if self._size is None and offset == 0:
            self._size = 0
        if offset != self.size:
            raise WrongOffset(f"blob {self.sha256[:12]}: write at offset {offset} but {self.size} bytes are "
                              "committed; query the write status and resume from there")
        if self.size + len(data) > self.limit:
            raise BlobRejected(f"blob {self.sha256[:12]}: {self.size + len(data)} bytes sent but the manifest "
                               f"says {self.limit}")
        data = data if type(data) is bytes else bytes(data)  # held as it came, so never changed under us
        self._take(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.size += len(data)
        if self._pending_bytes >= self.part_bytes:
            self._stage()
        return self.size

    def _stage(self) -> None:
        """Put the bytes accepted since the last part as the next part, unless another process did."""
        if not self._pending:
            return
        key = f"{self.store._staging(self.station_id, self.sha256)}{self._stage_at:020d}"
        try:
            obs.put(self.store.objects, key, b"".join(self._pending), mode="create", use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            self.size = self._stage_at
            self._drop_pending()
            raise WrongOffset(f"blob {self.sha256[:12]}: another archive process already holds bytes from "
                              f"offset {self._stage_at}; query the write status and resume from there") from None
        except BaseError as exc:
            self.size = self._stage_at
            self._drop_pending()
            raise _unavailable(f"keep the partial upload of blob {self.sha256[:12]}", exc) from None
        self._stage_at += self._pending_bytes
        self._drop_pending()
        self._staged = True

    def _drop_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    @property
    def sm3(self) -> str:
        return self._sm3.hexdigest()

    def finish(self) -> Exception | None:
        """Store the whole blob under its name when its size and digest check out; None when stored."""
        try:
            if self.size != self.limit or self.digest != self.sha256:
                self._drop_pending()
                self.store._discard(self.station_id, self.sha256)
                if self.store.has(self.sha256):
                    return None  # another stream of this upload (a station resuming after a cut) stored it first
                return BlobStore.damaged(self.sha256, self.size, self.digest, self.limit)
            try:
                self.store._put_once(self.sha256, self._all.body(), self.sm3)
                self.store._heads.keep(self.sha256, self._all.head(_RangeReader.head_bytes), self.size)
            except StoreUnavailable as exc:
                try:
                    self._stage()  # keep what arrived, to resume from
                except (StoreUnavailable, WrongOffset):
                    pass
                return exc
            except BlobRejected as exc:
                return exc
            self._drop_pending()
            if self._staged:
                try:
                    self.store._discard(self.station_id, self.sha256)
                except StoreUnavailable:
                    pass  # parts left behind are only garbage: the blob is stored
            return None
        finally:
            self._all.close()

    def close(self) -> None:
        """Keep what arrived (the stream ended or failed): stage the rest as a part."""
        if self._all.closed:
            return
        try:
            self._stage()
        finally:
            self._all.close()

    def __enter__(self) -> "S3Upload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Held:
    """Every byte of one upload, for the final put: the chunks as they came (no copy) while they add up
    to at most ``memory_bytes``, then a temporary file."""

    memory_bytes = 32 << 20

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0
        self.file: BinaryIO | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.file is None and self.size + len(data) > self.memory_bytes:
            self.file = tempfile.TemporaryFile()
            self.file.writelines(self.chunks)
            self.chunks = []
        if self.file is not None:
            self.file.write(data)
        else:
            self.chunks.append(data)
        self.size += len(data)

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes held."""
        if self.file is not None:
            self.file.seek(0)
            return self.file.read(limit)
        found, size = [], 0
        for chunk in self.chunks:
            if size >= limit:
                break
            found.append(chunk[:limit - size])
            size += len(found[-1])
        return b"".join(found)

    def body(self) -> bytes | BinaryIO:
        if self.file is not None:
            self.file.seek(0)
            return self.file
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def close(self) -> None:
        self.closed, self.chunks = True, []
        if self.file is not None:
            self.file.close()


class _Heads:
    """The first bytes (a page's header, what the commit's standards check reads) and size of the blobs this
    process stored lately, for at most ``limit_bytes`` of them: a page is judged at its bundle's commit soon
    after its upload, on the same process unless a load balancer sent the commit elsewhere (then it is read)."""

    limit_bytes = 16 << 20

    def __init__(self):
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._bytes = 0

    def keep(self, sha256: str, head: bytes, size: int) -> None:
        with self._lock:
            if sha256 in self._kept:
                self._bytes -= len(self._kept.pop(sha256)[0])
            self._kept[sha256] = (head, size)
            self._bytes += len(head)
            while self._bytes > self.limit_bytes:
                self._bytes -= len(self._kept.popitem(last=False)[1][0])

    def take(self, sha256: str) -> tuple[bytes, int] | None:
        """The kept head and size of ``sha256`` (then forgotten), None when none is kept."""
        with self._lock:
            kept = self._kept.pop(sha256, None)
            if kept is not None:
                self._bytes -= len(kept[0])
            return kept


class _RangeReader(io.RawIOBase):
    """A stored object read by ranged GETs, seekable (Pillow reads a page's header, then seeks).

    A read that goes on from where the last one ended asks for all the caller wants; one after a
    seek asks for at most ``head_bytes`` first, so looking at a header does not fetch a megabyte."""

    head_bytes = 64 << 10

    def __init__(self, store: S3BlobStore, key: str, size: int, head: bytes = b""):
        self.store, self.key, self.size, self.pos = store, key, size, 0
        self.head, self._ended = head, len(head)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        if self.pos < len(self.head):  # the head the first GET brought
            got = min(want, len(self.head) - self.pos)
            buffer[:got] = self.head[self.pos:self.pos + got]
            self.pos += got
            return got
        if self.pos != self._ended:
            want = min(want, self.head_bytes)
        try:
            data = obs.get_range(self.store.objects, self.key, start=self.pos, end=self.pos + want)
        except BaseError as exc:
            raise OSError(f"the object store failed to read {self.key} ({type(exc).__name__})") from None
        got = len(data)
        buffer[:got] = memoryview(data)
        self.pos += got
        self._ended = self.pos
        return got
