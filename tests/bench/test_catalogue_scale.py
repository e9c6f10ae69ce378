"""The catalogue-scale bench runs end to end on a small PostgreSQL catalogue and prints every figure it
promises; every search and listing it times has an index to use (none has to read a table whole), and a
dossier's materials are listed from their own rows (no bundle row read for each)."""

import re
import subprocess
import sys
from pathlib import Path

from bench.catalogue_scale import OPERATIONS

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalogue_bench_times_both_sizes_explains_every_statement_and_finds_no_full_scan():
    out = subprocess.run([sys.executable, "-m", "bench.catalogue_scale", "--rows", "100000", "--small", "10000",
                          "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    for op in OPERATIONS:
        assert re.search(rf"^{op} +[\d.]+ ms +[\d.]+ ms +[\d.]+×$", out, re.M), out
        # its statements, with the plan PostgreSQL ran them by (EXPLAIN ANALYZE with buffers)
        plan = out.split(f"\n== {op}\n", 1)[1].split("\n== ", 1)[0]
        assert "Query Text:" in plan and "actual time=" in plan and "Buffers:" in plan, plan
        if op == "materials":
            # A dossier's materials from their own rows: no bundle row read for each (at 10 000 000 page rows
            # those, keyed by hash, came from disk one by one and took the listing past 2×).
            assert " on bundles" not in plan, plan
    assert "10,000 page rows (100 dossiers, 1,000 materials, 1 units)" in out, out
    assert "100,000 page rows (1,000 dossiers, 10,000 materials, 10 units)" in out, out
    # With sequential scans forbidden, a table still read whole is one no index serves (before the
    # search indexes: dossiers by number prefix, by part of a name, by unit).
    assert "full scans no index can avoid (sequential scans forbidden): none" in out, out
    assert re.search(r"^goal: every operation within 2× .*\(worst [\d.]+×: (met|NOT met)\)", out, re.M), out
