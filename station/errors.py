"""Station errors: each carries an exit code and a message that tells the operator what to do."""

import os


class StationError(Exception):
    """Base of every error the station reports to a person; ``str()`` is the whole message."""

    exit_code = 1


class UsageError(StationError):
    """The command was given something it cannot use."""

    exit_code = 2


class ConfigError(StationError):
    """Configuration is wrong; restarting will not help (EX_CONFIG, declared in the unit)."""

    exit_code = os.EX_CONFIG


class NotInitialised(ConfigError):
    """The station home has no key or store yet."""


class StoreError(StationError):
    """The page store cannot be used as asked."""

    exit_code = 5


class ScannerError(StationError):
    """The scanner stopped or could not start; pages already captured are kept."""

    exit_code = 3
    advice = "check the scanner and run the same scan command again to resume"

    def __init__(self, detail: str = "", resume_at: int | None = None, stored: int | None = None):
        self.detail = detail
        self.resume_at = resume_at
        self.stored = stored
        super().__init__(self._message())

    def _message(self) -> str:
        head = self.headline + (f" ({self.detail})" if self.detail else "")
        where = ""
        if self.resume_at is not None:
            kept = {1: "", 2: "page 1 is stored; "}.get(self.resume_at, f"pages 1–{self.resume_at - 1} are stored; ")
            where = f" — {kept}{self.advice} at page {self.resume_at}"
        else:
            where = f" — {self.advice}"
        return head + where

    def at(self, resume_at: int, also: str = "") -> "ScannerError":
        """The same fault, told with the page the operator resumes from (and ``also`` in its detail)."""
        return type(self)("; ".join(part for part in (self.detail, also) if part), resume_at=resume_at)

    headline = "scanner error"


class ScannerJammed(ScannerError):
    headline = "scanner jammed"
    advice = "clear the jam, put the unscanned sheets back in the feeder and run the same scan command to resume"


class DoubleFeed(ScannerJammed):
    """The scanner's ultrasonic sensor found two sheets fed together; it stopped, as for a jam."""

    headline = "double feed: the scanner found two sheets fed together and stopped"
    advice = ("take the two sheets out of the scanner, separate them, put both back on top of the unscanned "
              "sheets and run the same scan command to resume")


class CoverOpen(ScannerError):
    headline = "scanner cover open"
    advice = "close it, check the feeder and run the same scan command to resume"


class FeederEmpty(ScannerError):
    headline = "document feeder is empty"
    advice = "load the sheets into the feeder and run the same scan command"


class DeviceBusy(ScannerError):
    headline = "scanner is busy (another program is using it)"
    advice = "close the other program or wait for it, then run the same scan command to resume"


class ScannerIOError(ScannerError):
    headline = "scanner connection failed"
    advice = "check the USB cable and power, then run the same scan command to resume"


class ScannerNotFound(ScannerError):
    headline = "scanner not found"
    advice = "check it is switched on and connected; 'scanimage -L' lists what SANE sees"


class ScannerDriverFailed(ScannerError):
    """The process that runs the scanner's driver (libsane) hung or died; the station killed it and
    starts a fresh one on next use. Pages captured before are kept; the page in hand is lost."""

    headline = "the scanner driver failed"
    advice = ("the station restarts the driver by itself; check the feeder, put back any sheet that did not "
              "come out whole, and press Scan or run the same scan command to resume")


class ScannerDriverHung(ScannerDriverFailed):
    headline = "the scanner driver stopped responding"


class ScannerDriverCrashed(ScannerDriverFailed):
    headline = "the scanner driver stopped unexpectedly"


class BatchStopped(ScannerError):
    """The station service was asked to stop mid-batch; it finished the sheet in hand first."""

    headline = "scanning stopped because the station service is stopping"
    advice = "put the unscanned sheets back in the feeder and press Scan (or run 'quire-station scan') to resume"


class NotPermitted(StationError):
    """The station service refused the caller: not root, not its user, not in its group."""

    exit_code = 77  # EX_NOPERM


class NeedsTechnician(NotPermitted):
    """Only the station's own user (and root) may read its key and store, and the command needs them."""

    def __init__(self, home, owner: str, command: str = "COMMAND"):
        self.home, self.owner = home, owner
        super().__init__(f"only {owner} (the station's user) and root may read the station's key and store in "
                         f"{home}, and this command needs them; ask the technician to run it as that user: "
                         f"sudo -u {owner} quire-station --home {home} {command}")


class ServiceUnavailable(StationError):
    """The station service is not running, is stopping, or is busy with another batch."""

    exit_code = 69  # EX_UNAVAILABLE


class StationDiskFull(ScannerError):
    """The station's disk filled up mid-batch; the batch stops cleanly and resumes later."""

    exit_code = 5
    headline = "the station's disk is full"
    advice = ("free space ('quire-station purge' removes receipted pages) and run the same scan command "
              "to resume")


class SyncError(StationError):
    """The central service could not take the outbox; bundles stay queued."""

    exit_code = 4


class CentralUnreachable(SyncError):
    """No answer from the central service; bundles wait and are retried."""


class NotEnrolledError(ConfigError):
    """The station has no pinned central archive yet."""


class EnrolmentPending(SyncError):
    """Enrolment was requested; an operator has yet to approve the pairing code."""

    exit_code = 75  # EX_TEMPFAIL: try again once approved


class CentralKeyMismatch(SyncError):
    """The central service presents a key other than the pinned one: possibly an impostor."""

    exit_code = 6
