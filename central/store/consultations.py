"""The ``consultations`` table: readers' requests to consult (查阅) a dossier for a purpose and a
period, and, separately, to export from it; who decided each, when, why, and until when."""

from .catalogue import rows, within


def file(db, reader: str, archive_no: str, purpose: str, days: int, export: bool, at: str) -> int:
    """Record a request; its id."""
    return db.execute("INSERT INTO consultations (reader, archive_no, purpose, days, export_requested, state,"
                      " export_state, filed_at) VALUES (:reader, :archive_no, :purpose, :days, :export, 'requested',"
                      " :export_state, :at) RETURNING id",
                      {"reader": reader, "archive_no": archive_no, "purpose": purpose, "days": days,
                       "export": int(export), "export_state": "requested" if export else "none", "at": at}).fetchone()[0]


def get(source, consultation_id: int) -> dict | None:
    found = rows(source, "SELECT * FROM consultations WHERE id = :id", {"id": consultation_id})
    return found[0] if found else None


def decide_view(db, consultation_id: int, approve: bool, by: str, at: str, reason: str, expires_at: str | None) -> None:
    db.execute("UPDATE consultations SET state = :state, decided_by = :by, decided_at = :at, decision_reason = :reason,"
               " expires_at = :expires WHERE id = :id",
               {"state": "approved" if approve else "refused", "by": by, "at": at, "reason": reason,
                "expires": expires_at, "id": consultation_id})


def decide_export(db, consultation_id: int, approve: bool, by: str) -> None:
    db.execute("UPDATE consultations SET export_state = :state, export_decided_by = :by WHERE id = :id",
               {"state": "approved" if approve else "refused", "by": by, "id": consultation_id})


def end(db, consultation_id: int, at: str, reason: str) -> None:
    """End an approved consultation at ``at``, with ``reason`` as its decision's reason now."""
    db.execute("UPDATE consultations SET expires_at = :at, decision_reason = :reason WHERE id = :id",
               {"at": at, "reason": reason, "id": consultation_id})


def request_export(db, consultation_id: int) -> None:
    db.execute("UPDATE consultations SET export_state = 'requested' WHERE id = :id", {"id": consultation_id})


def of_reader(source, reader: str) -> list[dict]:
    """A reader's own consultations, each with its dossier's unit, oldest first."""
    return rows(source, "SELECT c.*, d.unit FROM consultations c JOIN dossiers d USING (archive_no)"
                        " WHERE c.reader = :reader ORDER BY c.id", {"reader": reader})


def of_units(source, units: list[str] | None) -> list[dict]:
    """Consultations on dossiers of ``units`` (None: all), each with the dossier's unit, oldest first."""
    where, params = within("d.unit", units)
    return rows(source, "SELECT c.*, d.unit FROM consultations c JOIN dossiers d USING (archive_no)"
                        f" WHERE {where} ORDER BY c.id", params)
