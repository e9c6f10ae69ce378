"""The off-site copy (异地备份), the copy's side: it adopts the primary's archive only once all of it checks.

The primary pushes (see ``replicate``) with the station sync's messages and resumable upload: a
transfer listing signed by the primary's key names a consistent snapshot of its catalogue and the
page blobs the copy may lack; the copy takes the missing bytes from their committed offsets, then,
on Commit, checks the snapshot as a station's upload is checked — every new bundle's station
signature, receipt, page hashes and standards profile — recomputes the primary's audit log, checks
its signed checkpoints and a consistency proof from the last checkpoint the copy holds, and only
then adopts it whole. A primary whose log forked or was rolled back is refused and nothing changes.

The copy never writes its own audit entries: its log is the primary's, byte for byte, so its Merkle
roots are the primary's. ``promote`` turns the copy into the primary with the primary's identity
(its archive key and TLS certificate, kept in escrow), so stations pinned to it sync on unchanged.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import nacl.signing

from quire import checkpoint as checkpoint_format
from quire import keys
from quire import manifest as manifest_format
from quire import receipt as receipt_format
from quire.canonical import canonical_bytes, parse_json_object, sha256_hex
from quire.cas import is_sha256_hex
from quire.db import utcnow
from quire.errors import ContractError
from quire.settings import validated
from quire.v1 import sync_pb2, sync_pb2_grpc

from . import audit, profile, standards, uploads
from .archive import Archive, open_archive
from .store import audit_log, blob_index, bundles
from .store import profiles as store_profiles
from .store import quarantine as store_quarantine
from .store import stations as store_stations
from .store.catalogue import Catalogue
from .config import CentralConfig
from .errors import BlobRejected, BlobsMissing, CentralError, UnknownBundle, UploadDamaged, WrongOffset
from .tls import TLS_NAME
from .verify import verify

TRANSFER_FORMAT = "quire.replica-transfer/1"
ACK_FORMAT = "quire.replica-ack/1"
STATE_FORMAT = "quire.replica-state/1"
# Domain separation: a transfer listing or an acknowledgement can never pass for another signed thing.
TRANSFER_CONTEXT = b"quire.replica-transfer.v1\x00"
ACK_CONTEXT = b"quire.replica-ack.v1\x00"
SOURCE_ID = "replica-source"   # the station id the primary's calls carry (uploads are kept apart by it)
STATE_FILE = "replica.json"    # in the copy's home: what it is a copy of and the log it holds
PROMOTED_FILE = "replica.promoted.json"
PROFILE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.toml")   # the archive's own profiles, home/profiles


class ReplicaError(CentralError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    scope = "caller"


class NotAReplica(ReplicaError):
    exit_code = 78


class ReplicaRefused(ReplicaError):
    """The primary offered something the copy will not adopt; the copy keeps its last good state."""

    exit_code = 65  # EX_DATAERR


class LogRolledBack(ReplicaRefused):
    pass


class LogForked(ReplicaRefused):
    pass


# ---- the copy's state file --------------------------------------------------------------------

def state_path(cfg: CentralConfig) -> Path:
    return cfg.home / STATE_FILE


def is_replica(cfg: CentralConfig) -> bool:
    return state_path(cfg).exists()


def load_state(cfg: CentralConfig) -> dict:
    """The copy's state; NotAReplica when this home is not a copy."""
    try:
        state = json.loads(state_path(cfg).read_text())
    except FileNotFoundError:
        raise NotAReplica(f"{cfg.home} is not an off-site copy; run 'quire-central replica init --primary "
                          "HOST:PORT --pin FINGERPRINT' there first") from None
    if state.get("format") != STATE_FORMAT:
        raise NotAReplica(f"{state_path(cfg)}: unknown format {state.get('format')!r}; upgrade Quire")
    return state


def _save_state(cfg: CentralConfig, state: dict) -> None:
    write_json(state_path(cfg), state)


def write_json(path: Path, obj: dict) -> None:
    """``obj`` to ``path`` atomically (temp file, fsync, rename), mode 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def held_checkpoint(state: dict) -> checkpoint_format.Checkpoint | None:
    cp = state.get("checkpoint")
    return checkpoint_format.from_json(cp) if cp else None


# ---- init: a fresh home becomes the copy of one primary ---------------------------------------

def fetch_identity(address: str, pin: str, insecure: bool = False, timeout_s: float = 10.0) -> tuple[bytes, str]:
    """The archive key and TLS certificate (PEM) of the Quire archive at ``address``, checked against the
    fingerprint ``pin`` given out of band and the key's signature over the certificate."""
    cert_pem = ""
    if insecure:
        channel = grpc.insecure_channel(address)
    else:
        host, _, port = address.rpartition(":")
        try:
            cert_pem = ssl.get_server_certificate((host.strip("[]"), int(port)), timeout=timeout_s)
        except (OSError, ValueError) as exc:
            raise ReplicaError(f"no TLS service at {address} ({exc}); check the address and that "
                               "'quire-central serve' runs there") from None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(cert_pem.encode()),
                                      options=[("grpc.ssl_target_name_override", TLS_NAME)])
    with channel:
        try:
            info = sync_pb2_grpc.StationSyncStub(channel).GetInfo(sync_pb2.GetInfoRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise ReplicaError(f"archive at {address} did not answer ({exc.code().name}: {exc.details()})") from None
    found = keys.fingerprint(info.public_key)
    if found != pin:
        raise ReplicaError(f"the archive at {address} presents key {found}, not {pin}; nothing was recorded. "
                           "Compare the fingerprint 'quire-central info' prints on that archive")
    if cert_pem:
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).digest()
        try:
            if info.tls_cert_sha256 != digest:
                raise ContractError("the certificate digest differs")
            keys.verify(info.public_key, keys.TLS_BINDING_CONTEXT, digest, info.tls_binding_signature,
                        "TLS certificate binding")
        except ContractError:
            raise ReplicaError(f"the TLS certificate at {address} is not vouched for by key {pin}: something "
                               "is in between; nothing was recorded") from None
    return info.public_key, cert_pem


def init(cfg: CentralConfig, primary: str, pin: str) -> dict:
    """Make the (empty) archive at ``cfg.home`` the off-site copy of the archive at ``primary``."""
    if is_replica(cfg):
        state = load_state(cfg)
        if state["primary_key"] != fetch_identity(primary, pin, cfg.insecure)[0].hex():
            raise ReplicaError(f"{cfg.home} is already the copy of {state['primary_fingerprint']}; use another home")
    archive = open_archive(cfg)
    try:
        used = {"entries": audit_log.size(archive.catalogue), "bundles": bundles.count(archive.catalogue)}
        if not is_replica(cfg) and (used["entries"] or used["bundles"]):
            raise ReplicaError(f"{cfg.home} already holds an archive ({used['entries']} audit entries, "
                               f"{used['bundles']} bundles); a copy starts from an empty home — choose a new one")
        own = keys.fingerprint(archive.public_key)
    finally:
        archive.close()
    key, cert_pem = fetch_identity(primary, pin, cfg.insecure)
    state = load_state(cfg) if is_replica(cfg) else {
        "format": STATE_FORMAT, "checkpoint": None, "bundles": 0, "blobs": 0, "blobs_seq": 0, "applied_at": ""}
    state.update(primary_address=primary, primary_key=key.hex(), primary_fingerprint=keys.fingerprint(key),
                 primary_cert=cert_pem, copy_fingerprint=own, since=state.get("since") or utcnow())
    _save_state(cfg, state)
    return state


# ---- the copy's answers to the primary ----------------------------------------------------------

class _PublicKeyOnly:
    """A Signer that only knows the primary's public key: what the copy checks the primary's log with."""

    algorithm = "ed25519"

    def __init__(self, public_key: bytes):
        self._public = public_key

    @property
    def public_key(self) -> bytes:
        return self._public

    def signature(self, message: bytes) -> bytes:
        raise ReplicaError("an off-site copy does not sign for its primary; promote it first")


def position(archive: Archive) -> sync_pb2.ReplicaState:
    state = load_state(archive.config)
    cp = held_checkpoint(state)
    return sync_pb2.ReplicaState(
        primary_key_fingerprint=state["primary_fingerprint"], tree_size=cp.tree_size if cp else 0,
        root_hash=cp.body["root_hash"] if cp else "", bundles=state["bundles"], blobs=state["blobs"],
        applied_at=state["applied_at"], blobs_seq=state["blobs_seq"])


def _transfers(cfg: CentralConfig) -> Path:
    path = cfg.home / "replica" / "transfers"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _incoming(cfg: CentralConfig, sha256: str) -> Path:
    return cfg.home / "replica" / f"snapshot-{sha256}.db"


@dataclass
class Listing:
    id: str
    body: dict

    @property
    def snapshot(self) -> dict | None:
        """The catalogue snapshot, or None for a batch of blobs ahead of it (a copy far behind)."""
        return self.body["snapshot"]

    def is_snapshot(self, sha256: str) -> bool:
        return self.snapshot is not None and sha256 == self.snapshot["sha256"]

    def sizes(self) -> dict[str, int]:
        out = {b["sha256"]: b["bytes"] for b in [*self.body["blobs"], *self.body.get("profiles", [])]}
        if self.snapshot is not None:
            out[self.snapshot["sha256"]] = self.snapshot["bytes"]
        return out


def offer(archive: Archive, data: bytes, signature: bytes) -> tuple[str, list[str], list[int]]:
    """Check the primary's signed transfer listing; answer which blobs the copy still needs."""
    state = load_state(archive.config)
    primary = bytes.fromhex(state["primary_key"])
    try:
        keys.verify(primary, TRANSFER_CONTEXT, data, signature, "replica transfer listing")
        body = parse_json_object(data, "replica transfer listing")
    except ContractError as exc:
        raise ReplicaRefused(f"transfer listing refused: {exc}; nothing was accepted") from None
    problems = _listing_problems(body, state)
    if problems:
        raise ReplicaRefused("transfer listing refused: " + "; ".join(problems))
    transfer_id = sha256_hex(data)
    folder = _transfers(archive.config)
    for old in folder.glob("*.json"):  # one transfer at a time: an older one was abandoned
        if old.stem != transfer_id:
            _forget(archive, old)
    (folder / f"{transfer_id}.json").write_bytes(data)
    listing = Listing(transfer_id, body)
    missing = [sha for sha in listing.sizes() if not _held(archive, listing, sha)]
    return transfer_id, missing, [_committed_size(archive, listing, sha) for sha in missing]


def _listing_problems(body: dict, state: dict) -> list[str]:
    if body.get("format") != TRANSFER_FORMAT:
        return [f"unknown format {body.get('format')!r} (this copy reads {TRANSFER_FORMAT}); upgrade it"]
    out = []
    if body.get("primary") != state["primary_fingerprint"]:
        out.append(f"it is from archive {body.get('primary')}, but this is the copy of {state['primary_fingerprint']}")
    items = [*([body["snapshot"]] if body.get("snapshot") is not None else []), *(body.get("blobs") or [])]
    for item in items:
        if not (isinstance(item, dict) and is_sha256_hex(item.get("sha256", "")) and isinstance(item.get("bytes"), int)
                and item["bytes"] >= 0):
            out.append(f"{item!r} is not a blob (sha256, bytes)")
            break
    if not isinstance(body.get("blobs_seq"), int):
        out.append("blobs_seq missing")
    for item in body.get("profiles", []):
        if not (isinstance(item, dict) and PROFILE_FILE.fullmatch(str(item.get("name"))) and is_sha256_hex(
                str(item.get("sha256"))) and isinstance(item.get("bytes"), int)):
            out.append(f"{item!r} is not a standards profile file (name, sha256, bytes)")
            break
    return out


def _forget(archive: Archive, listing_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError, TypeError):
        body = json.loads(listing_file.read_bytes())
        sha = body["snapshot"]["sha256"]
        _partial_snapshot(archive.config, sha).unlink(missing_ok=True)
        _incoming(archive.config, sha).unlink(missing_ok=True)
    listing_file.unlink(missing_ok=True)


def _listing(archive: Archive, transfer_id: str) -> Listing:
    path = _transfers(archive.config) / f"{transfer_id}.json"
    if not is_sha256_hex(transfer_id) or not path.exists():
        raise UnknownBundle(f"transfer {transfer_id[:12]} was not offered to this copy; offer it first")
    return Listing(transfer_id, json.loads(path.read_bytes()))


def _held(archive: Archive, listing: Listing, sha256: str) -> bool:
    if listing.is_snapshot(sha256):
        return _incoming(archive.config, sha256).exists()
    return archive.blobs.has(sha256)


def write(archive: Archive, chunks) -> uploads.Written:
    """Take one Write stream of the primary's: page blobs stored as a station's are, the snapshot kept aside."""
    first = next(chunks, None)
    if first is None:
        raise BlobRejected("empty upload: the first message must name the transfer and a blob")
    listing = _listing(archive, first.bundle_id)
    sizes = listing.sizes()
    completed, msg, broken_off = [], first, None
    finisher = uploads.GroupCommit(archive)
    try:
        while msg is not None:
            sha256 = msg.sha256
            if sha256 not in sizes:
                raise BlobRejected(f"blob {sha256[:12]!r} is not listed in transfer {listing.id[:12]}")
            if listing.is_snapshot(sha256):
                size, msg = _write_snapshot(archive, sha256, sizes[sha256], msg, chunks)
            else:
                size, msg = uploads.write_blob(archive, SOURCE_ID, sha256, sizes[sha256], msg, chunks, finisher)
            if msg is None:
                broken_off = size
                break
            completed.append(sha256)
            msg = next(chunks, None)
    finally:
        finisher.close()
    if broken_off is not None:
        return uploads.Written(broken_off, False, completed)
    return uploads.Written(sizes[completed[-1]], True, completed)


def _write_snapshot(archive: Archive, sha256: str, declared: int, msg, chunks):
    """The catalogue snapshot's chunks, appended to a file of its own beside the blob store (it is read once,
    on Commit, then deleted: the write-once store would keep every snapshot for good)."""
    target = _incoming(archive.config, sha256)
    if target.exists():
        while msg is not None and not msg.finish_write:
            msg = next(chunks, None)
        return declared, msg
    part = _partial_snapshot(archive.config, sha256)
    with open(part, "ab") as fh:
        size = fh.tell()
        while msg is not None:
            data = msg.data
            uploads.check_crc(sha256, msg, data)
            if msg.write_offset != size:
                raise WrongOffset(f"catalogue snapshot {sha256[:12]}: write at offset {msg.write_offset} but {size} "
                                  "bytes are committed; query the write status and resume from there")
            if size + len(data) > declared:
                raise BlobRejected(f"catalogue snapshot {sha256[:12]}: more than the {declared} bytes listed")
            fh.write(data)
            size += len(data)
            if msg.finish_write:
                break
            msg = next(chunks, None)
        fh.flush()
        os.fsync(fh.fileno())
    if msg is None:
        return size, None
    with open(part, "rb") as fh:
        found = hashlib.file_digest(fh, "sha256").hexdigest()
    if found != sha256 or size != declared:
        part.unlink(missing_ok=True)
        raise UploadDamaged(f"catalogue snapshot {sha256[:12]}: received {size} bytes hashing to {found[:12]}; "
                            "it was discarded, send it again from offset 0")
    os.replace(part, target)
    return declared, msg


def _partial_snapshot(cfg: CentralConfig, sha256: str) -> Path:
    return _incoming(cfg, sha256).with_suffix(".part")


def _committed_size(archive: Archive, listing: "Listing", sha256: str) -> int:
    if listing.is_snapshot(sha256):
        part = _partial_snapshot(archive.config, sha256)
        return part.stat().st_size if part.exists() else 0
    return archive.blobs.committed_size(SOURCE_ID, sha256)


# ---- commit: check everything, then adopt it whole ---------------------------------------------

_commit_lock = threading.Lock()


def commit(archive: Archive, transfer_id: str) -> tuple[bytes, bytes]:
    """Check the offered snapshot and the blobs it names; adopt it, or refuse naming every problem."""
    with _commit_lock:
        cfg = archive.config
        state = load_state(cfg)
        listing = _listing(archive, transfer_id)
        missing = [sha for sha in listing.sizes() if not _held(archive, listing, sha)]
        if missing:
            raise BlobsMissing(f"transfer {transfer_id[:12]}: {len(missing)} blob(s) not uploaded yet "
                               f"(first {missing[0][:12]}); offer it again and upload them")
        if listing.snapshot is None:
            return _blobs_received(archive, state, listing)
        snapshot = _incoming(cfg, listing.snapshot["sha256"])
        view = Archive(cfg, _PublicKeyOnly(bytes.fromhex(state["primary_key"])), Catalogue(snapshot),
                       archive.blobs, archive.tls)
        try:
            checked = check_snapshot(archive, view, state, listing.body)
        finally:
            view.catalogue.close()
        _adopt(archive, snapshot)
        _keep_profiles(archive, listing.body.get("profiles", []))
        for leftover in (snapshot, snapshot.with_name(snapshot.name + "-wal"), snapshot.with_name(snapshot.name + "-shm")):
            leftover.unlink(missing_ok=True)
        state.update(checkpoint=checked["checkpoint"], bundles=checked["bundles"], blobs=checked["blobs"],
                     blobs_seq=listing.body["blobs_seq"], applied_at=utcnow())
        _save_state(cfg, state)
        (_transfers(cfg) / f"{transfer_id}.json").unlink(missing_ok=True)
        return _ack(archive, transfer_id, state, checked["tree_size"], checked["root_hash"])


def _blobs_received(archive: Archive, state: dict, listing: Listing) -> tuple[bytes, bytes]:
    """A batch of blobs ahead of the snapshot is held: the copy's position among the primary's blobs moves on."""
    state["blobs_seq"] = max(state["blobs_seq"], listing.body["blobs_seq"])
    _save_state(archive.config, state)
    (_transfers(archive.config) / f"{listing.id}.json").unlink(missing_ok=True)
    cp = held_checkpoint(state)
    return _ack(archive, listing.id, state, cp.tree_size if cp else 0, cp.body["root_hash"] if cp else "")


def _ack(archive: Archive, transfer_id: str, state: dict, tree_size: int, root_hash: str) -> tuple[bytes, bytes]:
    ack = {"format": ACK_FORMAT, "copy": keys.fingerprint(archive.public_key), "transfer": transfer_id,
           **{k: state[k] for k in ("bundles", "blobs", "blobs_seq", "applied_at")},
           "tree_size": tree_size, "root_hash": root_hash}
    data = canonical_bytes(ack)
    return data, keys.sign(archive.key, ACK_CONTEXT, data)


def check_snapshot(archive: Archive, view: Archive, state: dict, listing: dict) -> dict:
    """Everything the copy checks before adopting ``view`` (the primary's snapshot); raises with every
    problem found, else returns the new position."""
    primary = view.public_key
    problems: list[str] = []
    log = audit.verify_log(view)
    problems += [str(p) for p in log.problems]
    newest = audit.latest_checkpoint(view)
    try:
        said = checkpoint_format.from_json(listing["checkpoint"]) if listing.get("checkpoint") else None
        if said is not None:
            checkpoint_format.verify(said, primary)
    except ContractError as exc:
        raise ReplicaRefused(f"the transfer's checkpoint does not verify: {exc}") from None
    if (said and said.body) != (newest and newest.body):
        problems.append("the transfer listing names another audit checkpoint than the snapshot's newest")
    held = held_checkpoint(state)
    if held is not None:
        _check_history(view, held, newest, primary, state)
    problems += _new_bundle_problems(archive, view)
    problems += [str(p) for p in verify(view, full=False).problems]
    problems = list(dict.fromkeys(problems))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ReplicaRefused(f"the primary's snapshot was refused; the copy keeps its state of "
                             f"{state['applied_at'] or 'its creation'} ({len(problems)} problem(s)):\n  {shown}\n"
                             "Run 'quire-central verify' and 'quire-central audit verify' on the primary")
    counts = {"bundles": bundles.count(view.catalogue, "committed"), "blobs": blob_index.count(view.catalogue)}
    return {"checkpoint": newest.to_json() if newest else None, "tree_size": log.entries,
            "root_hash": log.root.hex(), **counts}


def _check_history(view: Archive, held, newest, primary: bytes, state: dict) -> None:
    """The primary's log must extend the one the copy holds: refuse a rollback or a fork loudly."""
    ours = f"{held.tree_size} entries, root {held.body['root_hash']} (signed {held.body['signed_at']})"
    if newest is None or newest.tree_size < held.tree_size:
        theirs = f"{newest.tree_size} entries, root {newest.body['root_hash']}" if newest else "an empty log"
        raise LogRolledBack(
            f"the primary's audit log was rolled back: this copy holds {ours}, the primary now offers {theirs}. "
            "Nothing was adopted; the copy keeps its state. The primary lost entries (restored from an old "
            "backup, or tampered with): investigate it, and if it is lost promote this copy instead "
            "('quire-central promote')")
    try:
        proof = audit.consistency_proof(view, held.tree_size, newest.tree_size)
        checkpoint_format.check_consistent(held, newest, proof, primary)
    except (ContractError, CentralError, ValueError) as exc:
        theirs = f"{newest.tree_size} entries, root {newest.body['root_hash']} (signed {newest.body['signed_at']})"
        raise LogForked(
            f"the primary's audit log forked: this copy holds {ours}, and the primary's log of {theirs} does not "
            f"extend it ({exc}). History was rewritten on the primary; nothing was adopted and the copy keeps "
            "its state. Investigate the primary; if it cannot be trusted, promote this copy "
            "('quire-central promote')") from None


def _new_bundle_problems(archive: Archive, view: Archive) -> list[str]:
    """Each bundle committed since the copy's last state, checked as its station's upload was."""
    known = bundles.committed_ids(archive.catalogue)
    keys_by_station = store_stations.keys(view.catalogue)
    released = store_quarantine.released_ids(view.catalogue)
    problems = []
    for bundle in bundles.committed(view.catalogue):
        if bundle["id"] in known:
            continue
        subject = f"bundle {bundle['id'][:12]}"
        data = bytes(bundle["manifest"])
        try:
            station_key = keys_by_station.get(bundle["station_id"])
            if station_key is None:
                raise ContractError(f"station {bundle['station_id']} is not registered")
            manifest_format.verify(data, bytes(bundle["signature"]), station_key)
            manifest = manifest_format.read(data)
            body = receipt_format.verify(bytes(bundle["receipt"]), bytes(bundle["receipt_signature"]),
                                         view.public_key, bundle["id"])
        except ContractError as exc:
            problems.append(f"{subject}: {exc}")
            continue
        if sha256_hex(data) != bundle["id"]:
            problems.append(f"{subject}: its manifest hashes to {sha256_hex(data)[:12]}")
        absent = [p["sha256"] for p in manifest["pages"] if not view.blobs.has(p["sha256"])]
        if absent:
            problems.append(f"{subject}: page file {absent[0][:12]} (of {len(absent)}) was not sent")
            continue
        if bundle["id"] in released or not isinstance(body.get("standards"), dict):
            continue  # catalogued under four eyes after quarantine, or judged before profiles were recorded
        chosen = _profile_of(view, body["standards"])
        if chosen is None:
            problems.append(f"{subject}: the snapshot does not record profile {body['standards'].get('profile')} "
                            f"v{body['standards'].get('version')} that judged it")
            continue
        reasons = standards.check(manifest, _blob_opener(view), chosen).reasons()
        problems += [f"{subject}: breaks {chosen.label}: {reason}" for reason in reasons]
    return problems


def _blob_opener(archive: Archive):
    """How stored page files are read here (the one place: the blob store hands out streams, not paths)."""
    return archive.blobs.open


def _profile_of(view: Archive, used: dict) -> "profile.Profile | None":
    """The standards profile a receipt names, rebuilt from the content the primary recorded for it."""
    row = store_profiles.version(view.catalogue, used.get("profile"), used.get("version"))
    if row is None or (used.get("sha256") and row["sha256"] != used["sha256"]):
        return None
    content = bytes(row["content"])
    doc = validated(profile.ProfileFile, json.loads(content), row["path"], profile.ProfileError,
                    context={"file_name": row["name"]})
    settings = {key: value for section in ("resolution", "colour", "files", "skew", "catalogue", "qc")
                for key, value in dict(getattr(doc, section)).items()}
    return profile.Profile.model_validate({**settings, "name": doc.name, "version": doc.version, "title": doc.title,
                                           "sha256": sha256_hex(content), "content": content, "path": row["path"]})


def _keep_profiles(archive: Archive, files: list[dict]) -> None:
    """The primary's own standards profiles (rules as data, named by the catalogue) kept in this home too,
    so that a promoted copy judges new bundles by the same rules."""
    folder = archive.config.home / "profiles"
    folder.mkdir(exist_ok=True)
    for item in files:
        with _blob_opener(archive)(item["sha256"]) as fh:
            data = fh.read()
        target = folder / item["name"]
        if not target.exists() or target.read_bytes() != data:
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)


def _adopt(archive: Archive, snapshot: Path) -> None:
    """Replace the copy's catalogue with the checked snapshot in one SQLite transaction (the backup API)."""
    source = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        archive.catalogue.replace_from(source)
    finally:
        source.close()


def verify_copy(cfg: CentralConfig, full: bool = True):
    """``verify`` of this copy under its primary's key (the copy's own key signs nothing of the log)."""
    state = load_state(cfg)
    archive = open_archive(cfg, create=False)
    try:
        return verify(Archive(cfg, _PublicKeyOnly(bytes.fromhex(state["primary_key"])), archive.catalogue,
                              archive.blobs, archive.tls), full=full)
    finally:
        archive.close()


# ---- promote: the copy becomes the primary ------------------------------------------------------

def promote(cfg: CentralConfig, identity: Path) -> dict:
    """Turn this copy into the primary with the primary's escrowed identity (``identity``/keys/central.key
    and ``identity``/tls/{key,cert}.pem); the catalogue and log are checked under that key first."""
    state = load_state(cfg)
    key_file, tls_dir = identity / "keys" / "central.key", identity / "tls"
    try:
        key = keys.load_key_file(key_file)
    except ContractError as exc:
        raise ReplicaError(f"cannot promote: {exc}") from None
    public = bytes(key.verify_key) if isinstance(key, nacl.signing.SigningKey) else keys.signer(key).public_key
    if public.hex() != state["primary_key"]:
        raise ReplicaError(f"cannot promote: {key_file} is key {keys.fingerprint(public)}, but this copy holds the "
                           f"archive of {state['primary_fingerprint']}; give the primary's own escrowed identity")
    for name in ("key.pem", "cert.pem"):
        if not (tls_dir / name).exists():
            raise ReplicaError(f"cannot promote: {tls_dir / name} is missing; stations pinned the primary's TLS "
                               "certificate, so the escrowed identity must hold it")
    cert = (tls_dir / "cert.pem").read_text()
    if state.get("primary_cert") and cert.strip() != state["primary_cert"].strip():
        raise ReplicaError(f"cannot promote: {tls_dir / 'cert.pem'} is not the certificate the primary presented "
                           "when this copy was set up; stations would refuse it")
    archive = open_archive(cfg, create=False)
    try:
        view = Archive(cfg, _PublicKeyOnly(public), archive.catalogue, archive.blobs, archive.tls)
        report = verify(view, full=True)
        if not report.ok:
            raise ReplicaError("cannot promote: the copy does not verify under the primary's key:\n  "
                               + "\n  ".join(str(p) for p in report.problems[:20]))
    finally:
        archive.close()
    own_keys, own_tls = cfg.home / "keys", cfg.home / "tls"
    stamp = utcnow().replace(":", "").replace("-", "")
    os.replace(own_keys, cfg.home / f"keys.copy-{stamp}")
    os.replace(own_tls, cfg.home / f"tls.copy-{stamp}")
    for source, target in ((key_file, own_keys / "central.key"), (tls_dir / "key.pem", own_tls / "key.pem"),
                           (tls_dir / "cert.pem", own_tls / "cert.pem")):
        target.parent.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, 0o644 if target.name == "cert.pem" else 0o600)
    archive = open_archive(cfg, create=False)
    try:
        with archive.catalogue.transaction() as db:
            cp = held_checkpoint(state)
            audit.record(db, archive, "replica.promote", state["primary_fingerprint"], {
                "copy_key": state["copy_fingerprint"], "former_primary": state["primary_address"],
                "tree_size": cp.tree_size if cp else 0, "replicated_at": state["applied_at"]})
        size = audit.latest_checkpoint(archive).tree_size
    finally:
        archive.close()
    os.replace(state_path(cfg), cfg.home / PROMOTED_FILE)
    for folder in (cfg.home / "replica",):
        shutil.rmtree(folder, ignore_errors=True)
    return {"fingerprint": state["primary_fingerprint"], "tree_size": size, "replicated_at": state["applied_at"]}
