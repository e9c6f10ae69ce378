"""The kiosk page the station service serves: operators sign in with a name and PIN, watch each page
arrive with its flags, see the scanner's state and what to do, queue materials and press Scan.

It decides nothing: Scan and queueing go down the daemon's own control path (``Daemon.handle``), the
same the CLI takes, so one process owns the scanner whatever is pressed where.
"""

from .server import Kiosk, start

__all__ = ["Kiosk", "start"]
