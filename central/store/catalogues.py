"""Opening the catalogue the archive's config names: an SQLite file (the default) or a PostgreSQL database."""

import importlib
from pathlib import Path

from .catalogue import Catalogue, CatalogueStore

URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(where: str | Path) -> bool:
    return isinstance(where, str) and where.startswith(URL_SCHEMES)


def open_catalogue(where: str | Path, pool_size: int = 16) -> CatalogueStore:
    """The catalogue at ``where``: a ``postgresql://`` URL (no password in it: libpq's passfile holds that),
    with a pool of up to ``pool_size`` connections; else the path of an SQLite file."""
    if is_postgres_url(where):
        # Loaded by name, only for a PostgreSQL catalogue: an archive on SQLite (the default, and every
        # station-room command) never pays for importing psycopg and its pool.
        postgres = importlib.import_module(".postgres", __package__)
        return postgres.PostgresCatalogue(str(where), pool_size=pool_size)
    return Catalogue(Path(where))
