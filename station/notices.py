"""What the central archive tells a station outside receipts: rescan requests after a returned QC batch."""

import json

import grpc

from quire.v1 import sync_pb2, sync_pb2_grpc

from .home import Station
from .transport import open_channel


def fetch(station: Station, central: str | None = None, timeout_s: float = 10.0) -> list[dict]:
    """Ask for notices newer than the last one kept; keep them in the store; return the new ones."""
    address = central or station.config.central or station.store.get_meta("central_address")
    if not address:
        return []
    after = int(station.store.get_meta("notices_after") or 0)
    channel = open_channel(station, address)
    try:
        reply = sync_pb2_grpc.StationSyncStub(channel).Notices(
            sync_pb2.NoticesRequest(station_id=station.station_id, after_id=after), timeout=timeout_s)
    finally:
        channel.close()
    fresh = [dict(json.loads(n.body_json), id=n.id, kind=n.kind, created_at=n.created_at) for n in reply.notices]
    if fresh:
        kept = held(station) + fresh
        station.store.set_meta("notices", json.dumps(kept, ensure_ascii=False))
        station.store.set_meta("notices_after", str(max(n["id"] for n in fresh)))
    return fresh


def fetch_quietly(station: Station, central: str | None = None) -> list[dict]:
    """``fetch``, but an unreachable archive only means no news this time."""
    try:
        return fetch(station, central)
    except grpc.RpcError:
        return []


def held(station: Station) -> list[dict]:
    return json.loads(station.store.get_meta("notices") or "[]")


def describe(notice: dict) -> str:
    """One line for the operator: what to rescan and why."""
    pages = ", ".join(f"{p['n']}" + (f" ({p['reason']})" if p.get("reason") else "") for p in notice["pages"])
    return (f"RESCAN {notice['archive_no']} {notice['item']}: QC by {notice['inspector']} returned the batch "
            f"({notice['good_share'] * 100:.0f} % good) — pages {pages}; rescan the material and sync, "
            "then an archivist replaces it")
