"""`quire-station` with this process's clock off by some seconds, as on a Pi that booted without a
real-time clock: ``python -m tests.station.skewed_clock SECONDS ARGS…`` (libfaketime's job, in Python)."""

import sys
import time

from station.cli import main

if __name__ == "__main__":
    offset_s, real_time = float(sys.argv[1]), time.time
    time.time = lambda: real_time() + offset_s
    sys.exit(main(sys.argv[2:]))
