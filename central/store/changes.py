"""The ``changes`` table: four-eyes changes (双人复核), proposed by one person and decided by another."""

from .catalogue import rows, within


def open_on(db, kind: str, subject: str) -> int | None:
    """The id of a proposed change of ``kind`` on ``subject`` still waiting, or None."""
    found = rows(db, "SELECT id FROM changes WHERE kind = :kind AND subject = :subject AND state = 'proposed'",
                 {"kind": kind, "subject": subject})
    return found[0]["id"] if found else None


def propose(db, kind: str, subject: str, payload_json: str, reason: str, by: str, at: str) -> int:
    return db.execute("INSERT INTO changes (kind, subject, payload, reason, state, proposed_by, proposed_at)"
                      " VALUES (:kind, :subject, :payload, :reason, 'proposed', :by, :at) RETURNING id",
                      {"kind": kind, "subject": subject, "payload": payload_json, "reason": reason, "by": by,
                       "at": at}).fetchone()[0]


def decide(db, change_id: int, state: str, by: str, at: str) -> None:
    db.execute("UPDATE changes SET state = :state, decided_by = :by, decided_at = :at WHERE id = :id",
               {"state": state, "by": by, "at": at, "id": change_id})


def get(source, change_id: int) -> dict | None:
    found = rows(source, "SELECT * FROM changes WHERE id = :id", {"id": change_id})
    return found[0] if found else None


def of_kinds(source, kinds: list[str], state: str | None = None) -> list[dict]:
    """Changes of the given kinds (in ``state`` when given), oldest first."""
    where, params = within("kind", kinds, "k")
    if state:
        where += " AND state = :state"
        params["state"] = state
    return rows(source, f"SELECT * FROM changes WHERE {where} ORDER BY id", params)
