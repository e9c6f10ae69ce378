"""Capture sources behind one interface, chosen by a spec string.

``synthetic[:seed=N,sheets=N,duplex=yes|no]`` · ``folder:PATH`` · ``sane:DEVICE`` (e.g.
``sane:test:0``) · ``fault:KIND@N:SPEC`` (a crash fake wrapping another source).
"""

from ..errors import UsageError
from .base import RawPage, Source

__all__ = ["RawPage", "Source", "open_source", "SPEC_HELP"]

SPEC_HELP = "synthetic[:seed=N,sheets=N] | folder:PATH | sane:DEVICE (e.g. sane:test:0)"


def open_source(spec: str, dpi: int = 300, sane_options: dict | None = None,
                page_timeout_s: float | None = None, dpi_given: bool = False) -> Source:
    """Open the capture source a spec names; raise UsageError naming the valid forms.
    ``page_timeout_s``: how long a scanner may take over one page before its driver counts as hung;
    ``dpi_given``: the operator gave ``dpi`` (measured), so a folder's files that state none are not assumed."""
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        from .synthetic import SyntheticSource

        return SyntheticSource(dpi=dpi, **_synthetic_params(rest))
    if kind == "folder" and rest:
        from .folder import FolderSource

        return FolderSource(rest, dpi=dpi, dpi_given=dpi_given)
    if kind == "sane" and rest:
        from .sane_source import SaneSource

        return SaneSource(rest, dpi=dpi, options=sane_options, page_timeout_s=page_timeout_s)
    if kind == "fault" and rest:
        from .faults import FaultSource

        head, _, inner = rest.partition(":")
        fault, _, page = head.partition("@")
        if not page.isdigit() or not inner:
            raise UsageError(f"fault source {spec!r}: write fault:KIND@PAGE:SOURCE, e.g. fault:jam@7:sane:test:0")
        return FaultSource(fault, int(page), open_source(inner, dpi, sane_options, page_timeout_s, dpi_given))
    raise UsageError(f"unknown capture source {spec!r}; use {SPEC_HELP}")


def _synthetic_params(text: str) -> dict:
    params: dict = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key in ("seed", "sheets") and value.isdigit():
            params[key] = int(value)
        elif key == "duplex" and value in ("yes", "no"):
            params[key] = value == "yes"
        elif key == "title":
            params[key] = value
        else:
            raise UsageError(f"synthetic source: cannot use {part!r}; write e.g. synthetic:seed=3,sheets=2")
    return params
