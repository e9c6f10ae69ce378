"""Dossiers in the catalogue: search, and their identity fields checked against the record."""

import json

from .archive import Archive
from .changes import IDENTITY_FIELDS
from .verify import CatalogueMismatch, FieldMismatch, Problem


def search(archive: Archive, archive_no: str | None = None, name: str | None = None, category: str | None = None,
           date_from: str | None = None, date_to: str | None = None, unit: str | None = None, *,
           within: tuple[str, list]) -> list[dict]:
    """Dossiers matching every given filter, in the units ``within`` (``permissions.readable_units``) allows;
    with category or dates, the matching materials are listed too."""
    where, params = [within[0]], list(within[1])
    if archive_no:
        where.append("d.archive_no LIKE ? || '%'")
        params.append(archive_no)
    if name:
        where.append("d.name LIKE '%' || ? || '%'")
        params.append(name)
    if unit:
        where.append("d.unit = ?")
        params.append(unit)
    material_filter, mparams = [], []
    if category:
        material_filter.append("(m.category = ? OR m.item = ? OR m.item LIKE ? || '-%')")
        mparams += [category, category, category]
    if date_from:
        material_filter.append("m.date_formed >= ?")
        mparams.append(date_from)
    if date_to:
        material_filter.append("m.date_formed <= ?")
        mparams.append(date_to)
    sql = ("SELECT d.archive_no, d.name, d.sex, d.birth_date, d.unit, d.post, d.kind,"
           " (SELECT COUNT(*) FROM materials m WHERE m.archive_no = d.archive_no) AS materials")
    if material_filter:
        # The matching items in the same query: the dossiers without any drop out with the NULL.
        sql += (", (SELECT group_concat(item, ',') FROM (SELECT m.item FROM materials m WHERE m.archive_no ="
                f" d.archive_no AND {' AND '.join(material_filter)} ORDER BY m.item)) AS matching")
        params = mparams + params
        where.append("matching IS NOT NULL")
    sql += " FROM dossiers d" + (" WHERE " + " AND ".join(where) if where else "")
    out = archive.catalogue.query(sql + " ORDER BY d.archive_no", params)
    for row in out:
        if "matching" in row:
            row["matching"] = row["matching"].split(",")
    return out


def identity_problems(archive: Archive) -> list[Problem]:
    """Each dossier's identity fields equal the first signed manifest's, and its unit the first ingest's,
    as amended by applied four-eyes edits."""
    expected: dict[str, dict] = {}
    for row in archive.catalogue.query("SELECT event, entry FROM audit_entries WHERE event IN ('ingest', 'change.apply')"
                                       " ORDER BY idx"):
        try:
            entry = json.loads(row["entry"])
        except ValueError:
            continue  # the log check names a damaged entry
        if row["event"] == "ingest" and entry.get("archive_no") not in expected:
            bundle = archive.catalogue.one("SELECT manifest FROM bundles WHERE id = ?", [entry.get("bundle_id")])
            if bundle:
                dossier = json.loads(bundle["manifest"])["dossier"]
                expected[dossier["archive_no"]] = {f: dossier.get(f) for f in IDENTITY_FIELDS}
                expected[dossier["archive_no"]]["kind"] = dossier.get("kind") or "personnel"
                expected[dossier["archive_no"]]["unit"] = entry.get("unit")  # the uploading station's
        elif row["event"] == "change.apply" and entry.get("kind") == "edit_dossier":
            payload = entry.get("payload") or {}
            expected.setdefault(payload.get("archive_no"), {}).update(payload.get("fields") or {})
    problems = []
    for d in archive.catalogue.query("SELECT * FROM dossiers ORDER BY archive_no"):
        want = expected.get(d["archive_no"])
        if want is None:
            problems.append(CatalogueMismatch(f"dossier {d['archive_no']}", "no ingest in the audit log created it"))
            continue
        problems += [FieldMismatch(f"dossier {d['archive_no']}", f, d[f], want[f],
                                   "the signed manifest and the approved changes")
                     for f in (*IDENTITY_FIELDS, "unit") if f in want and d[f] != want[f]]
    return problems
