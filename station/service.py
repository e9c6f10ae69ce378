"""The station service's process entry: ``python -m station.service [--home DIR] daemon``.

It blocks the stop signals (and SIGPIPE) before anything else runs, so that every thread the
process will ever have, numpy's and OpenCV's included, inherits the block. SANE backends built on
sanei_thread (the test device, avision, pixma …) reset signal handlers for the whole process while
they read a page; a SIGTERM handler could vanish just as systemd sends SIGTERM and the process would
die mid-page. A blocked signal instead waits, pending, until the daemon's main loop takes it between
pages. ``quire-station daemon`` re-executes itself through here (same PID, as Type=notify needs).
"""

import os
import signal
import sys

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
BLOCKED = STOP_SIGNALS | {signal.SIGPIPE}


def signals_blocked() -> bool:
    """Whether this thread (and so every thread started from it) holds the stop signals blocked."""
    return STOP_SIGNALS <= signal.pthread_sigmask(signal.SIG_BLOCK, [])


def reexec() -> None:
    """Replace this process by ``python -m station.service`` with the same arguments."""
    os.execv(sys.executable, [sys.executable, "-m", "station.service", *sys.argv[1:]])


def main() -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    from .cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
