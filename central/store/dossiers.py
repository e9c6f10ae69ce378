"""The ``dossiers`` table: each dossier's archive number, identity fields (DA/T 31 著录), unit, and
whether a four-eyes change sealed (封存) or transferred (转递) it."""

from .catalogue import rows, within

IDENTITY_COLUMNS = ("name", "sex", "birth_date", "post", "kind")


def add(db, archive_no: str, unit: str, identity: dict, at: str) -> None:
    """Catalogue a dossier the first time a bundle of it arrives (once: later bundles change nothing)."""
    db.execute("INSERT INTO dossiers (archive_no, name, unit, created_at, sex, birth_date, post, kind)"
               " VALUES (:archive_no, :name, :unit, :at, :sex, :birth_date, :post, :kind)"
               " ON CONFLICT (archive_no) DO NOTHING",
               {"archive_no": archive_no, "unit": unit, "at": at,
                **{k: identity.get(k) for k in IDENTITY_COLUMNS}, "kind": identity.get("kind") or "personnel"})


def get(source, archive_no: str) -> dict | None:
    found = rows(source, "SELECT * FROM dossiers WHERE archive_no = :archive_no", {"archive_no": archive_no})
    return found[0] if found else None


def exists(source, archive_no: str) -> bool:
    return bool(rows(source, "SELECT 1 AS x FROM dossiers WHERE archive_no = :archive_no", {"archive_no": archive_no}))


def unit_of(source, archive_no: str) -> str | None:
    """The unit a dossier belongs to, or None when there is no such dossier."""
    found = rows(source, "SELECT unit FROM dossiers WHERE archive_no = :archive_no", {"archive_no": archive_no})
    return found[0]["unit"] if found else None


def closure(source, archive_no: str) -> dict:
    """The dossier's sealed_by_change, transferred_by_change and transferred_to ({} if no such dossier)."""
    found = rows(source, "SELECT sealed_by_change, transferred_by_change, transferred_to FROM dossiers"
                         " WHERE archive_no = :archive_no", {"archive_no": archive_no})
    return found[0] if found else {}


def every(source) -> list[dict]:
    """Every dossier's row, by archive number."""
    return rows(source, "SELECT * FROM dossiers ORDER BY archive_no")


def count(source) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM dossiers")[0]["n"]


def set_sealed(db, archive_no: str, change_id: int | None) -> None:
    """Seal the dossier by change ``change_id``, or unseal it (None)."""
    db.execute("UPDATE dossiers SET sealed_by_change = :change WHERE archive_no = :archive_no",
               {"change": change_id, "archive_no": archive_no})


def set_transferred(db, archive_no: str, change_id: int, to: str) -> None:
    db.execute("UPDATE dossiers SET transferred_by_change = :change, transferred_to = :to WHERE archive_no = :archive_no",
               {"change": change_id, "to": to, "archive_no": archive_no})


def set_identity(db, archive_no: str, fields: dict) -> None:
    """Change identity fields (only those of IDENTITY_COLUMNS) of one dossier."""
    unknown = sorted(set(fields) - set(IDENTITY_COLUMNS))
    if unknown:
        raise ValueError(f"not identity fields of a dossier: {', '.join(unknown)}")
    db.execute(f"UPDATE dossiers SET {', '.join(f'{k} = :{k}' for k in fields)} WHERE archive_no = :archive_no",
               {**fields, "archive_no": archive_no})


def search(source, archive_no: str | None = None, name: str | None = None, category: str | None = None,
           date_from: str | None = None, date_to: str | None = None, unit: str | None = None, *,
           units: list[str] | None) -> list[dict]:
    """Dossiers of ``units`` (``permissions.scoped_units``; None: every unit) matching every given filter; with
    category or dates, each also lists its matching materials' items (``matching``) and those without any drop out."""
    scope, params = within("d.unit", units, "scope")
    where = [scope]
    if archive_no:
        where.append("d.archive_no LIKE :archive_no || '%'")
        params["archive_no"] = archive_no
    if name:
        where.append("d.name LIKE '%' || :name || '%'")
        params["name"] = name
    if unit:
        where.append("d.unit = :unit")
        params["unit"] = unit
    material = []
    if category:
        material.append("(m.category = :category OR m.item = :category OR m.item LIKE :category || '-%')")
        params["category"] = category
    if date_from:
        material.append("m.date_formed >= :date_from")
        params["date_from"] = date_from
    if date_to:
        material.append("m.date_formed <= :date_to")
        params["date_to"] = date_to
    dossier_filter = " AND ".join(where)
    if material:
        dossier_filter += (" AND EXISTS (SELECT 1 FROM materials m WHERE m.archive_no = d.archive_no AND "
                           f"{' AND '.join(material)})")
    out = rows(source, "SELECT d.archive_no, d.name, d.sex, d.birth_date, d.unit, d.post, d.kind,"
                       " (SELECT COUNT(*) FROM materials m WHERE m.archive_no = d.archive_no) AS materials"
                       f" FROM dossiers d WHERE {dossier_filter} ORDER BY d.archive_no", params)
    if material:
        items: dict[str, list[str]] = {}
        for r in rows(source, "SELECT m.archive_no, m.item FROM materials m JOIN dossiers d ON d.archive_no ="
                              f" m.archive_no WHERE {' AND '.join(where + material)} ORDER BY m.archive_no, m.item",
                      params):
            items.setdefault(r["archive_no"], []).append(r["item"])
        for row in out:
            row["matching"] = items.get(row["archive_no"], [])
    return out


def overview(source, units: list[str] | None) -> list[dict]:
    """The dossiers of ``units`` (None: all) with their materials, pages, bytes and state, by archive number."""
    where, params = within("d.unit", units)
    return rows(source,
                "SELECT d.archive_no, d.name, d.kind, d.unit, COUNT(DISTINCT m.id) AS materials,"
                " COUNT(p.n) AS pages, COALESCE(SUM(p.bytes), 0) AS bytes,"
                " CASE WHEN d.transferred_to IS NOT NULL THEN 'transferred' WHEN d.sealed_by_change IS NOT NULL"
                " THEN 'sealed' ELSE '' END AS state"
                " FROM dossiers d LEFT JOIN materials m ON m.archive_no = d.archive_no"
                f" LEFT JOIN pages p ON p.material_id = m.id WHERE {where} GROUP BY d.archive_no ORDER BY d.archive_no",
                params)
