"""What the catalogue holds, for people: dossiers, their materials, a material's pages."""

from .archive import Archive
from .permissions import Actor, readable_units


def dossiers(archive: Archive, actor: Actor) -> list[dict]:
    """The dossiers of ``actor``'s units with their sizes."""
    where, params = readable_units(actor, "d.unit")
    return archive.catalogue.query(
        "SELECT d.archive_no, d.name, d.kind, d.unit, COUNT(DISTINCT m.id) AS materials,"
        " COUNT(p.n) AS pages, COALESCE(SUM(p.bytes), 0) AS bytes,"
        " CASE WHEN d.transferred_to IS NOT NULL THEN 'transferred' WHEN d.sealed_by_change IS NOT NULL"
        " THEN 'sealed' ELSE '' END AS state"
        " FROM dossiers d LEFT JOIN materials m ON m.archive_no = d.archive_no"
        f" LEFT JOIN pages p ON p.material_id = m.id WHERE {where} GROUP BY d.archive_no ORDER BY d.archive_no",
        params)


def materials(archive: Archive, archive_no: str) -> list[dict]:
    return archive.catalogue.query(
        "SELECT m.item, m.title, m.date_formed, m.page_count, m.bundle_id, b.station_id, m.catalogued_at"
        " FROM materials m JOIN bundles b ON b.id = m.bundle_id WHERE m.archive_no = ?", [archive_no])


def pages(archive: Archive, archive_no: str, item: str) -> list[dict]:
    return archive.catalogue.query(
        "SELECT p.n, p.sha256, p.bytes, p.media_type, p.width_px, p.height_px, p.dpi, p.colour"
        " FROM pages p JOIN materials m ON m.id = p.material_id"
        " WHERE m.archive_no = ? AND m.item = ? ORDER BY p.n", [archive_no, item])


def sort_items(rows: list[dict]) -> list[dict]:
    """Materials in catalogue order: 1-1, 1-2 … 4-1-1 … 10-1, not string order."""
    return sorted(rows, key=lambda r: [int(x) for x in r["item"].split("-")])
