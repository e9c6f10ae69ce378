"""Dossiers in the catalogue: search by number, name, unit, category and dates."""

from .archive import Archive
from .store import dossiers as store_dossiers


def search(archive: Archive, archive_no: str | None = None, name: str | None = None, category: str | None = None,
           date_from: str | None = None, date_to: str | None = None, unit: str | None = None, *,
           units: list[str] | None) -> list[dict]:
    """Dossiers matching every given filter, in ``units`` (``permissions.scoped_units``; None: every unit);
    with category or dates, the matching materials are listed too."""
    return store_dossiers.search(archive.catalogue, archive_no=archive_no, name=name, category=category,
                                 date_from=date_from, date_to=date_to, unit=unit, units=units)
