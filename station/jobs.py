"""The queue of prepared batches waiting for the Scan button, kept in one JSON file in the home.

Written whole on every change (temporary file, fsync, rename), so a restart or a power cut keeps
what operators queued. A batch leaves the queue only once it is sealed; an interrupted one stays
at the head with the reason, and the next press resumes it.
"""

import json
import os
import threading
import uuid
from pathlib import Path

from quire.catalogue import parse_item
from quire.cas import fsync_dir
from quire.db import utcnow

from .errors import StoreError, UsageError

FORMAT = "quire-station-queue/1"
# A whole dossier fed as one stack and split at its cover sheets: one job, shown under this "material".
WHOLE_DOSSIER = {"item": "整卷", "title": "整卷进纸，按分隔页拆分"}


class JobQueue:
    """Prepared batches in order; safe to use from the daemon's threads."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._jobs: list[dict] = self._read()

    def _read(self) -> list[dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StoreError(f"batch queue {self.path} is unreadable ({exc}); move it aside and queue again") from None
        if data.get("format") != FORMAT:
            raise StoreError(f"batch queue {self.path} has format {data.get('format')!r}, not {FORMAT!r}; "
                             "this version of Quire cannot read it")
        return data["jobs"]

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"format": FORMAT, "jobs": self._jobs}, fh, ensure_ascii=False, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)

    @staticmethod
    def check(dossier: dict, material: dict) -> None:
        """Refuse a batch that could never be scanned: no archive number, a bad item number, no title."""
        if not dossier.get("archive_no"):
            raise UsageError("a dossier archive number (档号) is required: --dossier D-0001")
        try:
            parse_item(material.get("item") or "")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not material.get("title"):
            raise UsageError("a material title is required: --title …")

    def add(self, dossier: dict, material: dict, operator: str, first: bool = False,
            by_cover_sheets: bool = False) -> dict:
        """Queue one material (at the end, or first); refuse one that is already queued. ``by_cover_sheets``
        queues the whole dossier as one feed, split at its cover sheets (``material`` is not used)."""
        if by_cover_sheets:
            if not dossier.get("archive_no"):
                raise UsageError("a dossier archive number (档号) is required: --dossier D-0001")
            material = dict(WHOLE_DOSSIER)
        else:
            self.check(dossier, material)
        with self._lock:
            for n, job in enumerate(self._jobs, 1):
                if (job["dossier"]["archive_no"], job["material"]["item"]) == (dossier["archive_no"], material["item"]):
                    if first:
                        self._jobs.insert(0, self._jobs.pop(n - 1))
                        self._write()
                        return job
                    raise UsageError(f"{dossier['archive_no']} {material['item']} is already queued "
                                     f"(position {n}); 'quire-station queue ls' shows the queue")
            job = {"id": uuid.uuid4().hex[:8], "dossier": dossier, "material": material, "operator": operator,
                   "queued_at": utcnow(), "last_error": None}
            if by_cover_sheets:
                job["by_cover_sheets"] = True
            self._jobs.insert(0, job) if first else self._jobs.append(job)
            self._write()
            return job

    def jobs(self) -> list[dict]:
        with self._lock:
            return [dict(job) for job in self._jobs]

    def head(self) -> dict | None:
        with self._lock:
            return dict(self._jobs[0]) if self._jobs else None

    def note_error(self, job_id: str, message: str, **more) -> None:
        """Keep the job, with why its last run stopped (and ``more`` of it: a dossier feed's page to resume
        at, a cover sheet refused); what the run before noted besides is forgotten."""
        with self._lock:
            for job in self._jobs:
                if job["id"] == job_id:
                    for key in ("feed_resume_at", "refusal"):
                        job.pop(key, None)
                    job["last_error"] = message
                    job.update({k: v for k, v in more.items() if v is not None})
                    self._write()

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs = [job for job in self._jobs if job["id"] != job_id]
            self._write()
