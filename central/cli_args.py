"""Arguments and report lines more than one quire-central command group shares, written once."""

import argparse


def add_json(parser: argparse.ArgumentParser, what: str = "JSON lines") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}")


def add_quick(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="sizes and counts only (misses changed bytes)")


def add_pin(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument("--pin", required=True, metavar="FINGERPRINT", help=f"{whose} key fingerprint (SHA256:…)")


def print_verify_report(report, quick: bool, whose: str = "") -> int:
    """Every problem on a line of its own, then the totals and the verdict; the exit code (1: problems)."""
    for problem in report.problems:
        print(problem)
    kind = "quick check (sizes, counts)" if quick else "full check (hashes, signatures)"
    verdict = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
    print(f"{whose}{kind}: {report.blobs} blobs ({report.bytes} bytes), {report.bundles} bundles, "
          f"{report.pages} pages — {verdict}")
    return 0 if report.ok else 1
