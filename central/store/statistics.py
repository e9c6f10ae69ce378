"""Read-only queries across the catalogue for the statistics (pages, QC, rejections, coverage), and
the ``units`` table they count against. Grouping keys come from the caller's fixed lists, never from
a request's text."""

from .catalogue import rows, within

# One row per bundle that reached a decision: who scanned it, where, when, how many pages.
BUNDLES = """
    SELECT b.id AS bundle_id, b.station_id AS station, b.state,
           COALESCE(b.operator, '') AS operator,
           COALESCE(d.unit, s.unit) AS unit,
           substr(CASE b.state WHEN 'committed' THEN b.committed_at
                  ELSE COALESCE(q.quarantined_at, b.offered_at) END, 1, 10) AS day,
           b.pages
    FROM bundles b
    JOIN stations s ON s.id = b.station_id
    LEFT JOIN dossiers d ON d.archive_no = b.archive_no
    LEFT JOIN quarantine q ON q.bundle_id = b.id
    WHERE b.state IN ('committed', 'rejected')"""

# One row per QC batch: who scanned and inspected it, its state and share of good pages.
QC_BATCHES = """
    SELECT q.bundle_id, q.station_id AS station, q.operator, q.inspector, q.state, q.good_share,
           COALESCE(d.unit, s.unit) AS unit, substr(COALESCE(q.decided_at, q.started_at), 1, 10) AS day
    FROM qc_batches q
    JOIN bundles b ON b.id = q.bundle_id
    JOIN stations s ON s.id = q.station_id
    LEFT JOIN dossiers d ON d.archive_no = b.archive_no"""

# One row per quarantined bundle, with every reason (JSON).
QUARANTINED = """
    SELECT q.bundle_id, q.station_id AS station, q.unit, q.reasons,
           COALESCE(b.operator, '') AS operator,
           substr(q.quarantined_at, 1, 10) AS day
    FROM quarantine q JOIN bundles b ON b.id = q.bundle_id"""

AGGREGATES = {
    BUNDLES: "SUM(CASE WHEN state = 'committed' THEN 1 ELSE 0 END) AS bundles,"
             " SUM(CASE WHEN state = 'committed' THEN pages ELSE 0 END) AS pages,"
             " SUM(CASE WHEN state = 'rejected' THEN 1 ELSE 0 END) AS rejected",
    QC_BATCHES: "COUNT(*) AS batches, SUM(CASE WHEN state = 'accepted' THEN 1 ELSE 0 END) AS accepted,"
                " SUM(CASE WHEN state = 'returned' THEN 1 ELSE 0 END) AS returned,"
                " SUM(CASE WHEN state = 'sampling' THEN 1 ELSE 0 END) AS sampling, AVG(good_share) AS good_share",
}


def _where(since: str | None, until: str | None, units: list[str] | None) -> tuple[str, dict]:
    clauses, params = [], {}
    if since:
        clauses.append("day >= :since")
        params["since"] = since
    if until:
        clauses.append("day <= :until")
        params["until"] = until
    if units is not None:
        clause, named = within("unit", units, "u")
        clauses.append(clause)
        params.update(named)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def grouped(source, of: str, keys: list[str], since: str | None, until: str | None,
            units: list[str] | None) -> list[dict]:
    """Rows of ``of`` (BUNDLES or QC_BATCHES) counted per ``keys`` (column names of ``of``), between the
    days ``since`` and ``until`` and in ``units`` (None: all)."""
    where, params = _where(since, until, units)
    cols = ", ".join(keys)
    return rows(source, f"SELECT {cols}, {AGGREGATES[of]} FROM ({of}) AS t{where} GROUP BY {cols} ORDER BY {cols}", params)


def quarantined(source, since: str | None, until: str | None, units: list[str] | None) -> list[dict]:
    """Quarantined bundles between the days ``since`` and ``until`` and in ``units`` (None: all)."""
    where, params = _where(since, until, units)
    return rows(source, f"SELECT * FROM ({QUARANTINED}) AS t{where}", params)


def coverage(source) -> list[dict]:
    """Per unit known anywhere: its name, dossiers, dossiers with a material, materials, pages, expected."""
    return rows(source, """
        WITH known AS (SELECT unit FROM dossiers UNION SELECT unit FROM stations UNION SELECT id FROM units)
        SELECT k.unit,
               (SELECT name FROM units u WHERE u.id = k.unit) AS name,
               (SELECT COUNT(*) FROM dossiers d WHERE d.unit = k.unit) AS dossiers,
               (SELECT COUNT(*) FROM dossiers d WHERE d.unit = k.unit
                  AND EXISTS (SELECT 1 FROM materials m WHERE m.archive_no = d.archive_no)) AS covered,
               (SELECT COUNT(*) FROM materials m JOIN dossiers d USING (archive_no) WHERE d.unit = k.unit)
                  AS materials,
               (SELECT COALESCE(SUM(m.page_count), 0) FROM materials m JOIN dossiers d USING (archive_no)
                  WHERE d.unit = k.unit) AS pages,
               (SELECT dossiers_expected FROM units u WHERE u.id = k.unit) AS expected
        FROM known k ORDER BY k.unit""")


def unit(source, unit_id: str) -> dict | None:
    found = rows(source, "SELECT * FROM units WHERE id = :id", {"id": unit_id})
    return found[0] if found else None


def set_expected(db, unit_id: str, expected: int, at: str) -> None:
    """Record how many dossiers a unit holds on paper (the unit is created, named after its id, if new)."""
    db.execute("INSERT INTO units (id, name, dossiers_expected, created_at) VALUES (:id, :id, :expected, :at)"
               " ON CONFLICT (id) DO UPDATE SET dossiers_expected = excluded.dossiers_expected",
               {"id": unit_id, "expected": expected, "at": at})
