"""What the catalogue holds, for people: dossiers, their materials, a material's pages."""

from .archive import Archive
from .permissions import Actor, scoped_units
from .store import blob_index
from .store import dossiers as store_dossiers
from .store import materials as store_materials
from .store import stations as store_stations


def dossiers(archive: Archive, actor: Actor) -> list[dict]:
    """The dossiers of ``actor``'s units with their sizes."""
    return store_dossiers.overview(archive.catalogue, scoped_units(actor))


def materials(archive: Archive, archive_no: str) -> list[dict]:
    """A dossier's materials with their bundle, station and when they were catalogued."""
    return store_materials.listed(archive.catalogue, archive_no)


def pages(archive: Archive, archive_no: str, item: str) -> list[dict]:
    """A material's pages in order, as catalogued."""
    return store_materials.pages_listed(archive.catalogue, archive_no, item)


def totals(archive: Archive) -> dict:
    """How much the archive holds: stations, dossiers, materials, pages, blobs and their bytes."""
    cat = archive.catalogue
    return {"stations": store_stations.count(cat), "dossiers": store_dossiers.count(cat),
            "materials": store_materials.count(cat), "pages": store_materials.page_count(cat),
            "blobs": blob_index.count(cat), "bytes": blob_index.total_bytes(cat)}


def sort_items(rows: list[dict]) -> list[dict]:
    """Materials in catalogue order: 1-1, 1-2 … 4-1-1 … 10-1, not string order."""
    return sorted(rows, key=lambda r: [int(x) for x in r["item"].split("-")])
