"""A dossier's directory (目录) for a station: what the catalogue holds of it, for the station's unit only."""

import grpc

from quire.catalogue import parse_item

from . import stations
from .archive import Archive
from .errors import CentralError
from .store import dossiers as store_dossiers
from .store import materials as store_materials


class DirectoryNotFound(CentralError):
    code = grpc.StatusCode.NOT_FOUND


def for_station(archive: Archive, station_id: str, archive_no: str) -> list[dict]:
    """The catalogued materials of dossier ``archive_no`` in item order, when it belongs to the station's unit.

    A dossier of another unit is answered exactly as one the archive does not hold: a station learns
    nothing of other units' dossiers.
    """
    station = stations.active(archive, station_id)
    if store_dossiers.unit_of(archive.catalogue, archive_no) != station["unit"]:
        raise DirectoryNotFound(f"the archive's catalogue has no dossier {archive_no} of unit {station['unit']}; "
                                "check the archive number, or import the directory from a file "
                                "('quire-station directory import FILE')")
    rows = [{k: r[k] for k in ("item", "title", "date_formed", "page_count", "remarks")}
            for r in store_materials.of_dossier(archive.catalogue, archive_no)]
    return sorted(rows, key=lambda r: _order(r["item"]))


def _order(item: str) -> tuple:
    parsed = parse_item(item)
    return (*map(int, parsed.category.split("-")), parsed.seq)
