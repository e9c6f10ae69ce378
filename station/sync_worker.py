"""The daemon's background sync: offers queued bundles to the central archive every so often (and
soon after a batch is sealed), on its own thread and its own store connection, and says in a few
words whether the central archive answered."""

import logging
import threading

from .errors import CentralKeyMismatch, CentralUnreachable, NotEnrolledError, StationError
from .home import open_station

log = logging.getLogger(__name__)


class SyncWorker:
    """Runs ``sync`` in the background; ``state`` is the phrase the STATUS line shows."""

    def __init__(self, config, interval_s: float):
        self.config = config
        self.interval_s = interval_s
        self.state = "central not contacted yet"
        self._silent: dict[str, str] = {}   # archive addresses that did not answer the last sync's check
        self._stop = threading.Event()
        self._soon = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """Sync now rather than at the next interval (a bundle was just sealed)."""
        self._soon.set()

    def stop(self, timeout_s: float) -> None:
        """Stop after the call in flight; a sync cut short resumes next time, so waiting is bounded."""
        self._stop.set()
        self._soon.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from .sync import sync

        station = None
        try:
            while not self._stop.is_set():
                self._soon.clear()
                try:
                    station = station or open_station(self.config)
                    self._once(station, sync)
                except Exception:
                    self._set("central sync failing")
                    log.exception("sync failed")
                self._soon.wait(self.interval_s)
        finally:
            if station is not None:
                station.close()

    def _once(self, station, sync) -> None:
        if not (self.config.central or station.store.get_meta("central_address")):
            self._set("central not configured", "no central archive configured or enrolled; "
                      "run 'quire-station enroll --central HOST:PORT'")
            return
        try:
            report = sync(station)
        except NotEnrolledError as exc:
            self._set("central not enrolled", str(exc))
        except CentralKeyMismatch as exc:
            self._set("central KEY MISMATCH, nothing sent", str(exc), logging.ERROR)
        except CentralUnreachable as exc:
            self._set("central offline", str(exc))
        except StationError as exc:
            self._set("central sync failing", str(exc), logging.WARNING)
        else:
            for alarm in report.alarms:
                log.error("%s", alarm)
            if report.alarms:
                self._set("central HISTORY ALARM", "the alarm above is kept in 'quire-station status'", logging.ERROR)
            elif report.stopped:
                self._set("central refuses this station", report.stopped + "; every bundle stays queued",
                          logging.WARNING)
            else:
                self._set("central online", "central archive answers")
            self._note_silent({where: why for where, why in report.answered.items() if why})
            from .notices import describe

            for notice in report.notices:
                log.warning("%s", describe(notice))
            from .purge import purge

            bundles, files = purge(station)  # only receipted bundles past the configured retention
            if bundles:
                log.info("purged %d page file(s) of %d receipted bundle(s) past %g days", files, bundles,
                         self.config.retention_days)
            if report.committed:
                log.info("synced %d bundle(s), %d pages", len(report.committed), report.pages)
            for bundle_id, reason in report.rejected.items():
                log.warning("central archive refused bundle %s: %s", bundle_id[:12], reason)

    def _note_silent(self, silent: dict[str, str]) -> None:
        """Log, when it changes, which of several archive addresses did not answer (the others carry the sync)."""
        if set(silent) != set(self._silent):
            for where, why in silent.items():
                log.warning("central archive address %s did not answer (%s); syncing through the others", where, why)
            if not silent:
                log.info("every central archive address answers again")
        self._silent = silent

    def _set(self, state: str, why: str = "", level: int = logging.INFO) -> None:
        """Change the state, logging why only when it changes (not every interval)."""
        if state != self.state:
            log.log(level, "%s: %s", state, why or state)
        self.state = state
