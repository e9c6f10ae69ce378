"""The station as a witness of the archive's audit log: each receipt's checkpoint is compared with the
largest checkpoint the station has witnessed, and one that does not extend it is an alarm."""

import json

from quire import checkpoint as checkpoint_format
from quire import receipt as receipt_format
from quire.db import utcnow
from quire.errors import ContractError

from .errors import StationError
from .store import Store

BASELINE = "witnessed_receipt"   # meta: the receipt carrying the largest checkpoint witnessed
ALARM = "history_alarm"          # meta: the last alarm, for `status`


def witness(store: Store, receipt: bytes, body: dict, central_key: bytes, fresh: bool) -> str | None:
    """Check a verified receipt against the baseline and keep it as the new baseline when its log is
    larger; return the alarm (also kept for `status`) when the archive's history went back.

    ``fresh`` is a receipt the archive signed for this commit: its log holds the new ingest entry, so it
    can never be smaller than one signed before. A receipt for a bundle committed earlier (offered again)
    may be, but then it must have been signed before the baseline, too.
    """
    new = receipt_format.checkpoint_of(body)
    held = store.get_meta(BASELINE)
    held_body = json.loads(held) if held else None
    old = receipt_format.checkpoint_of(held_body) if held_body else None
    if new is None:
        return None  # a quire.receipt/1 receipt: from before the audit log
    if old is None:
        store.set_meta(BASELINE, receipt.decode())
        return None
    earlier = not fresh and new.tree_size < old.tree_size and new.body["signed_at"] <= old.body["signed_at"]
    if earlier:
        return None
    try:
        if new.tree_size < old.tree_size:
            checkpoint_format.check_consistent(old, new, [], central_key)  # raises: entries were removed
        receipt_format.check_history(held_body, body, central_key)
    except ContractError as exc:
        alarm = (f"ALARM: the archive's audit log does not extend the one this station witnessed at log size "
                 f"{old.tree_size} ({exc}); history may have been rewritten, or the archive restored from an "
                 "older copy — report this to the security officer, with what 'quire-station checkpoint' prints")
        store.set_meta(ALARM, f"{utcnow()} {alarm}")
        return alarm
    if new.tree_size > old.tree_size:
        store.set_meta(BASELINE, receipt.decode())
    return None


def held_checkpoint(store: Store) -> dict:
    """The largest checkpoint witnessed, as JSON `quire-central audit verify --checkpoint` reads."""
    held = store.get_meta(BASELINE)
    checkpoint = receipt_format.checkpoint_of(json.loads(held)) if held else None
    if checkpoint is None:
        raise StationError("this station holds no audit checkpoint yet: the first receipt of a sync brings "
                           "one ('quire-station sync')")
    return checkpoint.to_json()
