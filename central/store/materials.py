"""The ``materials``, ``pages`` and ``material_versions`` tables: each dossier's catalogued materials
(one committed bundle each), their pages as the signed manifest gives them, and the earlier versions
a four-eyes change replaced or withdrew."""

import json

from .catalogue import insert_rows, rows


# The station that sent the bundle, kept on the material for its dossier's listing (migration 0015).
_STATION = "(SELECT b.station_id FROM bundles b WHERE b.id = :bundle_id)"


def add(db, archive_no: str, item: str, category: str, fields: dict) -> int:
    """Catalogue a new material; ``fields``: title, date_formed, page_count, remarks, bundle_id, catalogued_at."""
    return db.execute("INSERT INTO materials (archive_no, item, category, title, date_formed, page_count, remarks,"
                      " bundle_id, catalogued_at, station_id) VALUES (:archive_no, :item, :category, :title,"
                      f" :date_formed, :page_count, :remarks, :bundle_id, :catalogued_at, {_STATION}) RETURNING id",
                      {"archive_no": archive_no, "item": item, "category": category, **fields}).fetchone()[0]


def replace(db, material_id: int, fields: dict) -> None:
    """Make the material its next version (``fields`` as for ``add``); its pages are removed, to be added again."""
    db.execute("DELETE FROM pages WHERE material_id = :id", {"id": material_id})
    db.execute("UPDATE materials SET title = :title, date_formed = :date_formed, page_count = :page_count,"
               " remarks = :remarks, bundle_id = :bundle_id, catalogued_at = :catalogued_at, version = version + 1,"
               f" station_id = {_STATION} WHERE id = :id", {**fields, "id": material_id})


_PAGE_FIELDS = ("n", "sha256", "bytes", "media_type", "width_px", "height_px", "dpi", "colour")


def add_pages(db, material_id: int, pages: list[dict]) -> None:
    """Catalogue a material's pages as their signed manifest entries give them (a statement per 100 pages)."""
    insert_rows(db, "pages", ("material_id", *_PAGE_FIELDS, "record_json"), [
        {"material_id": material_id, **{k: page[k] for k in _PAGE_FIELDS},
         "record_json": json.dumps(page["record"], ensure_ascii=False)} for page in pages])


def remove(db, material_id: int) -> None:
    """Take a withdrawn material and its pages out of the catalogue (its version is kept first)."""
    db.execute("DELETE FROM pages WHERE material_id = :id", {"id": material_id})
    db.execute("DELETE FROM materials WHERE id = :id", {"id": material_id})


def end_version(db, material: dict, how: str, change_id: int, at: str) -> None:
    """Keep the material's current version, with its pages, as ended ``how`` by change ``change_id``."""
    pages = rows(db, "SELECT n, sha256, bytes FROM pages WHERE material_id = :id ORDER BY n", {"id": material["id"]})
    db.execute("INSERT INTO material_versions (archive_no, item, version, bundle_id, title, page_count, pages,"
               " catalogued_at, ended_at, ended_how, change_id) VALUES (:archive_no, :item, :version, :bundle_id,"
               " :title, :page_count, :pages, :catalogued_at, :ended_at, :ended_how, :change_id)",
               {**{k: material[k] for k in ("archive_no", "item", "version", "bundle_id", "title", "page_count",
                                            "catalogued_at")},
                "pages": json.dumps([[p["n"], p["sha256"], p["bytes"]] for p in pages]),
                "ended_at": at, "ended_how": how, "change_id": change_id})


def get(source, archive_no: str, item: str) -> dict | None:
    """The current material's row, or None."""
    found = rows(source, "SELECT * FROM materials WHERE archive_no = :archive_no AND item = :item",
                 {"archive_no": archive_no, "item": item})
    return found[0] if found else None


def of_bundle(source, bundle_id: str) -> dict | None:
    """The material catalogued from ``bundle_id`` now, or None."""
    found = rows(source, "SELECT * FROM materials WHERE bundle_id = :bundle_id", {"bundle_id": bundle_id})
    return found[0] if found else None


def of_dossier(source, archive_no: str) -> list[dict]:
    """A dossier's materials as a reader's catalogue shows them (unsorted)."""
    return rows(source, "SELECT item, category, title, date_formed, page_count, remarks, version FROM materials"
                        " WHERE archive_no = :archive_no", {"archive_no": archive_no})


def with_bundles(source, archive_no: str, item: str | None = None) -> list[dict]:
    """A dossier's materials (or one of them) with their bundle's manifest, signature, receipt and station."""
    sql = ("SELECT m.*, b.manifest, b.signature, b.receipt, b.receipt_signature, b.station_id"
           " FROM materials m JOIN bundles b ON b.id = m.bundle_id WHERE m.archive_no = :archive_no")
    if item:
        sql += " AND m.item = :item"
    return rows(source, sql, {"archive_no": archive_no, "item": item})


def listed(source, archive_no: str) -> list[dict]:
    """A dossier's materials for its listing: item, title, dates, pages, bundle, station, when catalogued —
    from the material rows alone (the station is kept on each when it is catalogued)."""
    return rows(source, "SELECT item, title, date_formed, page_count, bundle_id, station_id, catalogued_at"
                        " FROM materials WHERE archive_no = :archive_no", {"archive_no": archive_no})


def without_committed_bundle(source) -> list[dict]:
    """Materials that no committed bundle accounts for (archive_no, item, bundle_id)."""
    return rows(source, "SELECT m.archive_no, m.item, m.bundle_id FROM materials m"
                        " LEFT JOIN bundles b ON b.id = m.bundle_id AND b.state = 'committed' WHERE b.id IS NULL")


def page_counts(source) -> list[dict]:
    """Every material's id, archive_no, item, bundle_id and how many pages it has catalogued."""
    return rows(source, "SELECT m.id, m.archive_no, m.item, m.bundle_id,"
                        " (SELECT COUNT(*) FROM pages p WHERE p.material_id = m.id) AS pages"
                        " FROM materials m ORDER BY m.id")


def count(source) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM materials")[0]["n"]


def pages_of(source, material_id: int) -> list[dict]:
    """A material's page rows, in order."""
    return rows(source, "SELECT * FROM pages WHERE material_id = :id ORDER BY n", {"id": material_id})


def page(source, archive_no: str, item: str, n: int) -> dict | None:
    """One page's row, or None."""
    found = rows(source, "SELECT p.* FROM pages p JOIN materials m ON m.id = p.material_id"
                         " WHERE m.archive_no = :archive_no AND m.item = :item AND p.n = :n",
                 {"archive_no": archive_no, "item": item, "n": n})
    return found[0] if found else None


def pages_listed(source, archive_no: str, item: str) -> list[dict]:
    """A material's pages for a listing: n, sha256, bytes, media type, size, dpi, colour."""
    return rows(source, "SELECT p.n, p.sha256, p.bytes, p.media_type, p.width_px, p.height_px, p.dpi, p.colour"
                        " FROM pages p JOIN materials m ON m.id = p.material_id"
                        " WHERE m.archive_no = :archive_no AND m.item = :item ORDER BY p.n",
                {"archive_no": archive_no, "item": item})


def page_count(source) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM pages")[0]["n"]


def places_of_blob(source, sha256: str) -> list[dict]:
    """Where a blob is a current page (archive_no, item, n)."""
    return rows(source, "SELECT m.archive_no, m.item, p.n FROM pages p JOIN materials m ON m.id = p.material_id"
                        " WHERE p.sha256 = :sha256 ORDER BY m.archive_no, m.item, p.n", {"sha256": sha256})


def versions_naming(source, sha256: str) -> list[dict]:
    """Earlier versions whose page list names ``sha256`` (archive_no, item, version, pages JSON)."""
    return rows(source, "SELECT archive_no, item, version, pages FROM material_versions"
                        " WHERE pages LIKE :pattern ORDER BY archive_no, item, version", {"pattern": f"%{sha256}%"})


def versions(source, archive_no: str, item: str) -> list[dict]:
    """A material's earlier versions, oldest first, with the reason and people of the change that ended each."""
    return rows(source, "SELECT v.*, c.reason, c.proposed_by, c.decided_by FROM material_versions v"
                        " JOIN changes c ON c.id = v.change_id WHERE archive_no = :archive_no AND item = :item"
                        " ORDER BY version", {"archive_no": archive_no, "item": item})


def version_of_bundle(source, bundle_id: str) -> dict | None:
    """The earlier version catalogued from ``bundle_id``, with the state of the change that ended it, or None."""
    found = rows(source, "SELECT v.*, c.state AS change_state FROM material_versions v"
                         " LEFT JOIN changes c ON c.id = v.change_id WHERE v.bundle_id = :bundle_id",
                 {"bundle_id": bundle_id})
    return found[0] if found else None
