"""The station daemon: one process owns the scanner, runs queued batches when Scan is pressed (or
the CLI asks), syncs in the background, and keeps systemd told (READY, WATCHDOG, STATUS, STOPPING)."""

import logging
import os
import queue
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from quire import keys
from quire.db import one
from quire.threads import opencv_threads

from . import profiles
from .control import ControlServer, Peer
from .errors import (BatchStopped, ScannerError, ScannerIOError, ScannerNotFound, ServiceUnavailable,
                     StationError, UsageError)
from .home import open_station
from .jobs import JobQueue
from .notify import Notifier, Watchdog, watchdog_interval_s
from .scanner import Scanner
from .service import STOP_SIGNALS, reexec, signals_blocked
from .sync_worker import SyncWorker

log = logging.getLogger(__name__)
SIGNAL_POLL_S = 0.5   # longest an idle daemon takes to notice SIGTERM
ANNOUNCE_RETRY_S = 60  # a station without a network yet tries zeroconf again this often


def status_line(activity: str, outbox: int, central: str) -> str:
    """The one line ``systemctl status`` shows: what the station does · its outbox · the central archive."""
    return f"{activity} · outbox {outbox} bundle{'' if outbox == 1 else 's'} · {central}"


@dataclass
class _ScanRequest:
    """A batch the CLI asked to run now; its control thread waits on ``done``."""

    job: dict | None                  # dossier/material to queue first, or None for the queue's head
    operator: str
    emit: Callable[[dict], None]
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None
    error: StationError | None = None
    gone: bool = False                # the caller hung up; the batch goes on
    signed_in: bool = False           # operator is who signed in on the kiosk: the batch records them
    review: dict | None = None        # a pre-seal review action to run instead of a batch (station.review)

    def send(self, message: dict) -> None:
        if self.gone:
            return
        try:
            self.emit(message)
        except OSError:
            self.gone = True


class Daemon:
    """The station service's main loop; ``run`` returns the process exit code."""

    def __init__(self, config, env: Mapping[str, str] = os.environ, take_signals: bool = False):
        self.config = config
        self.take_signals = take_signals   # stop signals are blocked: take them from the pending set
        self.notifier = Notifier.from_env(env)
        self.watchdog = Watchdog(self.notifier, watchdog_interval_s(env))
        self.stopping = False
        self.activity = "starting"
        self.note: str | None = None       # the last thing worth telling (a refused press, a sealed batch)
        self.current: dict | None = None   # the job being scanned
        self.outbox = 0
        self.station = self.jobs = self.scanner = self.control = self.sync = self.announcement = None
        self._requests: "queue.SimpleQueue[_ScanRequest]" = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._published: str | None = None
        self._announce_at = 0.0            # when to try the zeroconf announcement (again)
        self.kiosk = None                  # the kiosk page's server, when configured
        self.last_stop: dict | None = None  # why the last batch stopped (its kind, message, page to resume at)
        self.dossier_run: dict | None = None  # the last whole-dossier feed (by cover sheets): what the kiosk groups
        # Told of every batch, page, stop and seal (the kiosk): called on the scanning threads, so quick.
        self.listeners: list[Callable[[dict], None]] = []

    # -- life cycle ------------------------------------------------------------------------

    def run(self) -> int:
        """Start, serve until stopped, shut down cleanly."""
        clean = False
        try:
            self._start()
            self._published = self._line()
            self.notifier.ready(self._published)
            log.info("ready: %s", self._published)
            self._loop()
            clean = True
        finally:
            self._shutdown(clean)
        return 0

    def stop(self) -> None:
        """Ask the loop to finish the sheet in hand and exit; safe from another thread."""
        if not self.stopping:
            self.stopping = True
            doing = "finishing the sheet in hand" if self.current else "shutting down"
            self.notifier.stopping(f"stopping: {doing}")
        self.wake()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the pipe is full: the loop is awake already
            pass

    def _start(self) -> None:
        cfg = self.config
        control = ControlServer(cfg.control_socket_path, self._handle, cfg.control_group)
        control.ensure_free()   # before touching the scanner another daemon holds
        self.station = open_station(cfg)
        self._recover_spool()
        self.jobs = JobQueue(cfg.queue_path)
        # Waiting on the scanner-driver process (a page can take a minute) is not being stuck: feed the
        # watchdog meanwhile; the driver's own deadlines catch a hung driver, and it alone is killed.
        self.scanner = Scanner(cfg, profiles.load(cfg.profiles_dir), keepalive=self.watchdog.ping_if_due)
        self.scanner.probe()
        self.outbox = self._count_outbox()
        self._start_kiosk()    # before the sync thread: READY's first STATUS still says central was not contacted
        self.sync = SyncWorker(cfg, cfg.sync_interval_s)
        self.sync.start()
        self._announce()
        self.control = control
        self.control.start()

    def _start_kiosk(self) -> None:
        """Serve the kiosk page; a kiosk that cannot listen is logged, and the station scans all the same."""
        cfg = self.config
        if not cfg.kiosk:
            return
        from .web import start as start_kiosk

        try:
            self.kiosk = start_kiosk(self, cfg.kiosk_host, cfg.kiosk_port)
        except StationError as exc:
            log.error("%s", exc)
            return
        log.info("kiosk on %s", self.kiosk.url)

    def _recover_spool(self) -> None:
        """Store the pages a killed run captured but never processed (power cut, kill -9), before READY."""
        from .scan import open_spool, recover

        spool = open_spool(self.station)
        try:
            if not spool.waiting():
                return
            self.notifier.status("recovering pages an interrupted run left in the spool")
            recovered = recover(self.station, spool)
        finally:
            spool.close()
        if recovered:
            self.note = f"recovered {recovered} page(s) an interrupted run had captured"
            log.warning("%s", self.note)

    def _shutdown(self, clean: bool) -> None:
        while True:
            try:
                pending = self._requests.get_nowait()
            except queue.Empty:
                break
            pending.error = ServiceUnavailable("the station service stopped before running this batch; "
                                               "queue it again when it is back")
            pending.done.set()
        for part, close in ((self.announcement, lambda a: a.close()),
                            (self.kiosk, lambda k: k.stop()),
                            (self.control, lambda c: c.close()),
                            (self.sync, lambda s: s.stop(self.config.sync_timeout_s)),
                            (self.scanner, lambda s: s.close()),
                            (self.station, lambda s: s.close())):
            if part is not None:
                try:
                    close(part)
                except Exception:
                    log.exception("while shutting down")
        self._wake_r.close()
        self._wake_w.close()
        # systemctl status keeps the last STATUS after the process is gone: not "stopping (scanning …)".
        if clean:  # a failure's own STATUS ('failed: …') is the last one main() sends
            self.notifier.status(status_line("stopped", self.outbox, "sync stopped"))

    # -- the main loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping:
            self.watchdog.ping_if_due()
            self._take_signals()
            if self.stopping:
                break
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                request = None
            if request is not None:
                self._serve(request)
                continue
            if self.scanner.held:
                if self.scanner.scan_pressed():
                    self._on_scan_button()
            else:
                self.scanner.probe_if_due()
            self.outbox = self._count_outbox()
            self._announce()
            self._publish()
            self._sleep(self._tick_s())

    def _tick_s(self) -> float:
        tick = self.config.button_poll_s
        if self.watchdog.period_s is not None:
            tick = min(tick, self.watchdog.period_s)
        if self.take_signals:
            tick = min(tick, SIGNAL_POLL_S)  # a blocked SIGTERM does not wake select()
        return tick

    def _sleep(self, seconds: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        if ready:
            self._wake_r.recv(4096)

    def tell(self, event: dict) -> None:
        """Pass an event to every listener (the kiosk); a failing listener never stops a batch."""
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.warning("a listener failed on %s", event.get("event"), exc_info=True)

    def handle(self, request: dict, emit: Callable[[dict], None] = lambda message: None) -> dict:
        """A control request from inside the process (the kiosk), down the same path as the CLI's."""
        return self._handle(request, emit, Peer(os.getpid(), os.getuid(), os.getgid()))

    def _on_scan_button(self) -> None:
        job = self.jobs.head()
        if job is None:
            self.note = "Scan pressed but no batch is queued: 'quire-station queue add …'"
            log.info("Scan pressed with an empty queue")
            return
        log.info("Scan pressed: %s %s", job["dossier"]["archive_no"], job["material"]["item"])
        try:
            self._run_job(job)
        except StationError:
            pass  # kept on the job and in the note; the operator sees it in STATUS

    def _serve(self, request: _ScanRequest) -> None:
        try:
            if request.review is not None:
                request.result = self._review(request.review, request.operator)
                return
            if request.job is not None:
                job = self.jobs.add(request.job["dossier"], request.job["material"], request.operator, first=True,
                                    by_cover_sheets=bool(request.job.get("by_cover_sheets")))
            else:
                job = self.jobs.head()
                if job is None:
                    raise UsageError("no batch is queued; add one with 'quire-station queue add', or pass "
                                     "--dossier, --material and --title")
            request.result = self._run_job(job, request)
        except StationError as exc:
            request.error = exc
        finally:
            request.done.set()

    def _review(self, asked: dict, operator: str) -> dict:
        """A pre-seal review action, on the loop that owns the scanner: a rescanned or inserted page comes
        from the held scanner (never a second owner of it), and no batch runs meanwhile."""
        from . import review

        action, archive_no, item = asked.get("action"), str(asked.get("archive_no") or ""), str(asked.get("item") or "")
        reason = str(asked.get("reason") or "")
        try:
            if action == "rescan":
                done = review.rescan_page(self.station, archive_no, item, int(asked.get("n") or 0), operator, reason,
                                          source=self.scanner.lend())
            elif action == "insert":
                done = review.insert_page(self.station, archive_no, item, int(asked.get("after") or 0), operator,
                                          reason, source=self.scanner.lend())
            elif action == "remove":
                done = review.remove_page(self.station, archive_no, item, int(asked.get("n") or 0), operator, reason)
            elif action == "seal":
                bundle_id = review.seal(self.station, archive_no, item, operator, asked.get("confirm_reason"))
                done = {"bundle_id": bundle_id}
                self.outbox = self._count_outbox()
                self.sync.kick()
                self.note = f"sealed {archive_no} {item} after review"
                log.info("sealed %s %s after review, bundle %s", archive_no, item, bundle_id[:12])
            else:
                raise UsageError(f"unknown review action {action!r}: rescan, insert, remove or seal")
        except ScannerError as exc:
            if isinstance(exc, (ScannerIOError, ScannerNotFound)) and self.scanner.held:
                self.scanner.lost(exc)
            raise
        finally:
            self.tell({"event": "reviewed", "archive_no": archive_no, "item": item, "action": action})
            self._publish()
        return {"action": action, "archive_no": archive_no, "item": item, **done}

    def _run_job(self, job: dict, request: _ScanRequest | None = None) -> dict:
        from .scan import scan

        if job.get("by_cover_sheets"):
            return self._run_dossier(job, request)
        self.dossier_run = None
        if request is not None and request.signed_in:
            job = {**job, "operator": request.operator}   # who pressed Scan on the kiosk scans
        archive_no, item = job["dossier"]["archive_no"], job["material"]["item"]
        self.current, self.note, self.last_stop = job, None, None
        self.activity = f"scanning {archive_no} {item}"
        self.tell({"event": "batch", "job": job})
        self._publish()

        def on_page(n: int, record: dict) -> None:
            # Called as each page is stored (possibly by scan's store thread): report, do not ping;
            # the watchdog is fed by the capture loop on this thread, before each page is requested.
            self.activity = f"scanning {archive_no} {item} page {n}"
            self.tell({"event": "page", "job": job, "n": n, "record": record})
            self._publish()
            if request is not None:
                request.send({"event": "page", "n": n, "record": record})

        material = dict(job["material"], review=True) if self.config.review_before_seal else job["material"]
        try:
            source = _StopBetweenSheets(self.scanner.lend(), lambda: self.stopping, self._between_pages)
            result = scan(self.station, job["dossier"], material, source, job["operator"], on_page)
        except ScannerError as exc:
            self.jobs.note_error(job["id"], str(exc))
            self.note = f"{archive_no} {item}: {exc}"
            self.last_stop = {"job": job, "kind": type(exc).__name__, "message": str(exc), "resume_at": exc.resume_at}
            self.tell({"event": "stopped", **self.last_stop})
            if isinstance(exc, (ScannerIOError, ScannerNotFound)) and self.scanner.held:
                self.scanner.lost(exc)
            log.warning("batch %s %s stopped: %s", archive_no, item, exc)
            raise
        except StationError as exc:
            # Cannot be scanned as queued (e.g. already sealed): drop it, say why.
            self.jobs.remove(job["id"])
            self.note = f"{archive_no} {item} removed from the queue: {exc}"
            log.warning("batch %s %s refused: %s", archive_no, item, exc)
            raise
        except Exception as exc:
            log.exception("batch %s %s failed", archive_no, item)
            err = StationError(f"internal error while scanning {archive_no} {item} ({type(exc).__name__}); "
                               "pages stored so far are kept; see 'journalctl -u quire-station'")
            self.jobs.note_error(job["id"], str(err))
            self.note = str(err)
            raise err from None
        finally:
            self.current = None
            self.activity = "idle"
            self.outbox = self._count_outbox()
            self.tell({"event": "idle", "job": job})
        self.jobs.remove(job["id"])
        if result.bundle_id is None:    # kept open for the operator's review (station.review), not sealed
            self.note = f"{archive_no} {item}: {result.total_pages} pages, kept open for review"
            self.tell({"event": "review", "job": job, "pages": result.total_pages})
            log.info("kept %s %s open for review: %d pages", archive_no, item, result.total_pages)
            self._publish()
            return {"archive_no": archive_no, "item": item, "pages": result.pages, "total_pages": result.total_pages,
                    "first_page": result.first_page, "bundle_id": None}
        self.sync.kick()
        self.note = f"sealed {archive_no} {item} ({result.total_pages} pages)"
        self.tell({"event": "sealed", "job": job, "pages": result.total_pages, "bundle_id": result.bundle_id})
        log.info("sealed %s %s: %d pages, bundle %s", archive_no, item, result.total_pages, result.bundle_id[:12])
        self._publish()
        return {"archive_no": archive_no, "item": item, "pages": result.pages, "total_pages": result.total_pages,
                "first_page": result.first_page, "bundle_id": result.bundle_id}

    def _run_dossier(self, job: dict, request: _ScanRequest | None = None) -> dict:
        """A whole dossier fed as one stack, split at its cover sheets: each material is told as its sheet
        is read, its pages as they are stored, and it is sealed (or kept for review, its count differing
        from the directory) as the next sheet comes; a fault keeps the job with the feed page to resume at."""
        from .scan import CoverSheetRefused, scan_dossier

        if request is not None and request.signed_in:
            job = {**job, "operator": request.operator}
        archive_no = job["dossier"]["archive_no"]
        self.current, self.note, self.last_stop = job, None, None
        self.dossier_run = {"job_id": job["id"], "archive_no": archive_no}
        self.activity = f"scanning {archive_no} by its cover sheets"
        self.tell({"event": "batch", "job": job})
        self._publish()
        now = {"job": job}          # the material being scanned, as a job of its own for the screen

        def on_material(material: dict) -> None:
            now["job"] = self.current = {**job, "material": material}
            self.activity = f"scanning {archive_no} {material['item']}"
            self.tell({"event": "material", "job": now["job"]})
            self._publish()
            if request is not None:
                request.send({"event": "material", "item": material["item"], "title": material.get("title")})

        def on_page(n: int, record: dict) -> None:
            item = now["job"]["material"]["item"]
            self.activity = f"scanning {archive_no} {item} page {n}"
            self.tell({"event": "page", "job": now["job"], "n": n, "record": record})
            self._publish()
            if request is not None:
                request.send({"event": "page", "n": n, "record": record, "item": item})

        def on_done(result) -> None:
            self.outbox = self._count_outbox()
            if result.bundle_id is not None:
                self.sync.kick()
            self.tell({"event": "material_done", "job": now["job"], "pages": result.total_pages,
                       "bundle_id": result.bundle_id, "review": result.review_reason})
            self._publish()
            if request is not None:
                request.send({"event": "material_done", "item": result.item, "pages": result.total_pages,
                              "bundle_id": result.bundle_id, "review": result.review_reason})

        directory = [dict(entry) for entry in self.station.store.directory(archive_no)]
        try:
            source = _StopBetweenSheets(self.scanner.lend(), lambda: self.stopping, self._between_pages)
            done = scan_dossier(self.station, job["dossier"], directory, source, job["operator"], on_page,
                                on_material, on_done, first_feed_page=job.get("feed_resume_at") or 1,
                                review=self.config.review_before_seal)
        except ScannerError as exc:
            resume = getattr(exc, "feed_resume_at", None)
            self.jobs.note_error(job["id"], f"{exc} (dossier feed: put the stack back from feed page {resume})",
                                 feed_resume_at=resume)
            self.note = f"{archive_no}: {exc}"
            self.last_stop = {"job": now["job"], "kind": type(exc).__name__, "message": str(exc),
                              "resume_at": resume, "feed": True}
            self.tell({"event": "stopped", **self.last_stop})
            if isinstance(exc, (ScannerIOError, ScannerNotFound)) and self.scanner.held:
                self.scanner.lost(exc)
            log.warning("dossier feed %s stopped at feed page %s: %s", archive_no, resume, exc)
            raise
        except CoverSheetRefused as exc:
            # Kept queued: the operator takes out what does not belong and feeds the rest again.
            self.jobs.note_error(job["id"], str(exc), refusal={"kind": exc.kind, "facts": exc.facts})
            self.note = f"{archive_no}: {exc}"
            self.tell({"event": "refused", "message": str(exc), "kind": exc.kind, "facts": exc.facts})
            log.warning("dossier feed %s: cover sheet refused: %s", archive_no, exc)
            raise
        except StationError as exc:
            self.jobs.note_error(job["id"], str(exc))
            self.note = f"{archive_no}: {exc}"
            log.warning("dossier feed %s stopped: %s", archive_no, exc)
            raise
        except Exception as exc:
            log.exception("dossier feed %s failed", archive_no)
            err = StationError(f"internal error while scanning {archive_no} by its cover sheets "
                               f"({type(exc).__name__}); pages stored so far are kept; "
                               "see 'journalctl -u quire-station'")
            self.jobs.note_error(job["id"], str(err))
            self.note = str(err)
            raise err from None
        finally:
            self.current = None
            self.activity = "idle"
            self.outbox = self._count_outbox()
            self.tell({"event": "idle", "job": now["job"]})
        self.jobs.remove(job["id"])
        held = [r.item for r in done.materials if r.bundle_id is None]
        self.note = (f"{archive_no}: {len(done.materials)} materials from one feed"
                     + (f", {', '.join(held)} kept open for review" if held else ", all sealed"))
        log.info("%s", self.note)
        self._publish()
        return {"archive_no": archive_no, "sheets": done.sheets,
                "materials": [{"item": r.item, "pages": r.total_pages, "first_page": r.first_page,
                               "bundle_id": r.bundle_id, "review": r.review_reason} for r in done.materials]}

    def _between_pages(self) -> None:
        """Runs on the capture loop before each page is requested: feed the watchdog, take a SIGTERM."""
        self.watchdog.ping_if_due()
        self._take_signals()

    def _take_signals(self) -> None:
        if self.take_signals and signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
            self.stop()

    # -- status ----------------------------------------------------------------------------

    def _activity(self) -> str:
        if self.current is not None or self.stopping:
            return self.activity if not self.stopping else f"stopping ({self.activity})"
        if not self.scanner.ready:
            return f"no scanner: {self.scanner.describe()}"
        jobs = self.jobs.jobs()
        if not jobs:
            idle = "idle, queue empty"
        else:
            head = jobs[0]
            idle = f"ready, next {head['dossier']['archive_no']} {head['material']['item']}"
            if len(jobs) > 1:
                idle += f" (+{len(jobs) - 1} queued)"
            if head.get("last_error"):
                return f"{idle}; last stop: {head['last_error']}"
        return f"{idle}; {self.note}" if self.note else idle

    def _state(self) -> str:
        """What the station does in one word of discovery.STATION_STATES, for its zeroconf announcement."""
        if self.stopping:
            return "stopping"
        if self.current is not None:
            return "scanning"
        if not self.scanner.ready:
            return "no-scanner"
        return "ready" if self.jobs.jobs() else "idle"

    def _line(self) -> str:
        return status_line(self._activity(), self.outbox, self.sync.state if self.sync else "central not contacted yet")

    def _announce(self) -> None:
        """Start the zeroconf announcement when configured; without a network yet, try again later.

        A station booting with its cable unplugged scans all the same; it appears on the network once it has one.
        """
        if not self.config.announce or self.announcement is not None or time.monotonic() < self._announce_at:
            return
        from .discovery import StationAnnouncement

        try:
            self.announcement = StationAnnouncement(self.config, self.station.station_id,
                                                    keys.fingerprint(self.station.public_key), self._state(),
                                                    self.outbox)
        except Exception as exc:  # noqa: BLE001 - zeroconf raises plain RuntimeError/OSError for "no network"
            self._announce_at = time.monotonic() + ANNOUNCE_RETRY_S
            log.warning("not announced on zeroconf yet (%s); trying again in %d s", exc, ANNOUNCE_RETRY_S)

    def _publish(self) -> None:
        line = self._line()
        if line != self._published:
            self.notifier.status(line)
            self._published = line
            self.tell({"event": "status", "status": line})
            if self.announcement is not None:
                try:
                    self.announcement.update(self._state(), self.outbox)
                except Exception:  # the announcement is a courtesy; scanning goes on without it
                    log.warning("zeroconf announcement not updated", exc_info=True)

    def _count_outbox(self) -> int:
        return one(self.station.store.db,
                   "SELECT COUNT(*) AS n FROM bundles WHERE state IN ('sealed', 'uploading')")["n"]

    # -- control requests (on the control server's threads) --------------------------------

    def _handle(self, request: dict, emit: Callable[[dict], None], peer: Peer) -> dict:
        op = request.get("op")
        if op == "status":
            return {"status": self._published, "pid": os.getpid(), "scanner": self.scanner.info(),
                    "queued": len(self.jobs.jobs()), "central": self.sync.state,
                    "station_id": self.station.station_id,
                    "key_fingerprint": keys.fingerprint(self.station.public_key),
                    "opencv_threads": opencv_threads()}
        if op == "queue_ls":
            return {"jobs": self.jobs.jobs(), "current": self.current and self.current["id"],
                    "status": self._published}
        if op == "queue_add":
            job = self.jobs.add(request.get("dossier") or {}, request.get("material") or {},
                                request.get("operator") or peer.user,
                                by_cover_sheets=bool(request.get("by_cover_sheets")))
            self.wake()
            self.tell({"event": "queued", "job": job})
            return {"job": job, "position": len(self.jobs.jobs())}
        if op == "review":
            if self.stopping:
                raise ServiceUnavailable("the station service is stopping; try again once it is back")
            signed_in = request.get("operator_signed_in")
            pending = _ScanRequest(None, signed_in or request.get("operator") or peer.user, emit,
                                   signed_in=bool(signed_in), review=request)
            self._requests.put(pending)
            self.wake()
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.result
        if op == "scan":
            if self.stopping:
                raise ServiceUnavailable("the station service is stopping; run the command again once it is back")
            wanted = None
            if request.get("by_cover_sheets"):
                if not (request.get("dossier") or {}).get("archive_no"):
                    raise UsageError("a dossier archive number (档号) is required: --dossier D-0001")
                wanted = {"dossier": request["dossier"], "material": {}, "by_cover_sheets": True}
            elif request.get("dossier"):
                wanted = {"dossier": request["dossier"], "material": request.get("material") or {}}
                JobQueue.check(wanted["dossier"], wanted["material"])
            signed_in = request.get("operator_signed_in")
            pending = _ScanRequest(wanted, signed_in or request.get("operator") or peer.user, emit,
                                   signed_in=bool(signed_in))
            if self.current is not None:
                pending.send({"event": "waiting", "message": "waiting for the batch in progress "
                              f"({self.current['dossier']['archive_no']} {self.current['material']['item']})"})
            self._requests.put(pending)
            self.wake()
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.result
        raise UsageError(f"the station service does not know the request {op!r}")


class _StopBetweenSheets:
    """A batch's source that pings the watchdog before each page and, once the daemon is stopping,
    ends the batch at the next sheet boundary (BatchStopped: the batch stays resumable).

    On a duplex feed a sheet is two pages; stopping between its sides would make the operator
    re-feed a sheet whose front is already stored, and that page would be captured twice.
    """

    def __init__(self, inner, stopping: Callable[[], bool], tick: Callable[[], object]):
        self.inner, self.stopping, self.tick = inner, stopping, tick
        self.name = inner.name
        self.duplex = bool(getattr(inner, "duplex", False))
        if hasattr(inner, "resume_at"):
            # A resumed batch's source starts at the next page (a folder, the synthetic feed): without this
            # the daemon fed those from the first sheet again, storing sheets twice.
            self.resume_at = inner.resume_at

    def pages(self):
        pages = iter(self.inner.pages())
        taken = 0
        while True:
            self.tick()
            if self.stopping() and (not self.duplex or taken % 2 == 0):
                raise BatchStopped()
            page = next(pages, None)
            if page is None:
                return
            taken += 1
            yield page

    def close(self) -> None:
        self.inner.close()


def main(config, env: Mapping[str, str] = os.environ) -> int:
    """Run the daemon in this process: SIGTERM/SIGINT stop it after the sheet in hand."""
    if not signals_blocked():
        reexec()  # through station.service, which blocks the stop signals before any thread exists
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    daemon = Daemon(config, env, take_signals=True)
    try:
        return daemon.run()
    except StationError as exc:
        # systemctl status shows the last STATUS: make it the reason the service stopped.
        daemon.notifier.status(f"failed: {exc}")
        raise
    except Exception as exc:
        daemon.notifier.status(f"failed: unexpected {type(exc).__name__}; the journal has the details "
                               "(journalctl -u quire-station)")
        raise
