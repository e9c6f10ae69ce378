"""What the central archive tells a station outside receipts: rescan requests after a returned QC batch."""

import json

from quire.v1 import sync_pb2

from .home import Station


def fetch(station: Station, stub, timeout_s: float) -> list[dict]:
    """Ask for notices newer than the last one kept; keep them in the store; return the new ones."""
    after = int(station.store.get_meta("notices_after") or 0)
    reply = stub.Notices(sync_pb2.NoticesRequest(station_id=station.station_id, after_id=after), timeout=timeout_s)
    fresh = [dict(json.loads(n.body_json), id=n.id, kind=n.kind, created_at=n.created_at) for n in reply.notices]
    if fresh:
        station.store.set_meta("notices", json.dumps(held(station) + fresh, ensure_ascii=False))
        station.store.set_meta("notices_after", str(max(n["id"] for n in fresh)))
    return fresh


def held(station: Station) -> list[dict]:
    return json.loads(station.store.get_meta("notices") or "[]")


def describe(notice: dict) -> str:
    """One line for the operator: what to rescan and why."""
    pages = ", ".join(f"{p['n']}" + (f" ({p['reason']})" if p.get("reason") else "") for p in notice["pages"])
    return (f"RESCAN {notice['archive_no']} {notice['item']}: QC by {notice['inspector']} returned the batch "
            f"({notice['good_share'] * 100:.0f} % good) — pages {pages}; rescan the material and sync, "
            "then an archivist replaces it")
