"""The ``qc_batches`` and ``qc_judgements`` tables: QC acceptance (数据验收) of committed bundles — the
random sample an inspector drew, their verdict on each sampled page, and the batch's outcome."""

from .catalogue import rows, within


def get(source, bundle_id: str) -> dict | None:
    found = rows(source, "SELECT * FROM qc_batches WHERE bundle_id = :id", {"id": bundle_id})
    return found[0] if found else None


def by_prefix(source, prefix: str) -> list[dict]:
    """Batches under QC whose bundle id starts with ``prefix``."""
    return rows(source, "SELECT * FROM qc_batches WHERE bundle_id LIKE :prefix || '%'", {"prefix": prefix.lower()})


def start(db, bundle_id: str, station_id: str, operator: str, inspector: str, sample_json: str, at: str) -> None:
    db.execute("INSERT INTO qc_batches (bundle_id, station_id, operator, inspector, sample, state, started_at)"
               " VALUES (:id, :station, :operator, :inspector, :sample, 'sampling', :at)",
               {"id": bundle_id, "station": station_id, "operator": operator, "inspector": inspector,
                "sample": sample_json, "at": at})


def judge(db, bundle_id: str, n: int, good: bool, reason: str | None, at: str) -> None:
    """Record (or record again) the verdict on one sampled page."""
    db.execute("INSERT INTO qc_judgements (bundle_id, n, good, reason, judged_at) VALUES (:id, :n, :good, :reason, :at)"
               " ON CONFLICT (bundle_id, n) DO UPDATE SET good = excluded.good, reason = excluded.reason,"
               " judged_at = excluded.judged_at",
               {"id": bundle_id, "n": n, "good": int(good), "reason": reason, "at": at})


def judgements(source, bundle_id: str) -> list[dict]:
    """The verdicts on a batch's sampled pages, by page."""
    return rows(source, "SELECT * FROM qc_judgements WHERE bundle_id = :id ORDER BY n", {"id": bundle_id})


def decide(db, bundle_id: str, state: str, good_share: float, at: str) -> None:
    db.execute("UPDATE qc_batches SET state = :state, decided_at = :at, good_share = :share WHERE bundle_id = :id",
               {"state": state, "at": at, "share": good_share, "id": bundle_id})


def committed_batches(source, units: list[str] | None, avoided: list[str]) -> list[dict]:
    """Committed bundles of stations in ``units`` (None: all) with their QC state ('waiting' before a sample
    was drawn), leaving out the dossiers ``avoided``, in the order committed."""
    where, params = within("s.unit", units, "u")
    if avoided:
        names = {f"a{i}": a for i, a in enumerate(avoided)}
        where += f" AND m.archive_no NOT IN ({', '.join(':' + k for k in names)})"
        params.update(names)
    return rows(source, "SELECT b.id AS bundle_id, b.station_id, s.unit, m.archive_no, m.item, m.page_count,"
                        " COALESCE(q.state, 'waiting') AS qc, q.inspector, q.good_share FROM bundles b"
                        " JOIN materials m ON m.bundle_id = b.id JOIN stations s ON s.id = b.station_id"
                        f" LEFT JOIN qc_batches q ON q.bundle_id = b.id WHERE b.state = 'committed' AND {where}"
                        " ORDER BY b.committed_at", params)
