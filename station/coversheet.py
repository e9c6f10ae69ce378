"""Cover sheets (分隔页): one printed A4 sheet before each material, so a whole dossier is one feed.

Each sheet carries a QR code (segno) with a small versioned payload — ``QUIRE-COVER/1`` then the
archive number, the item and the title, one per line — and the same in large type, so the operator
reads what the station reads. A generic sheet (``NEXT``) means "the next material in the list".
The station recognises sheets with ``station.pipeline.coversheet``.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import segno
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from quire.catalogue import parse_item

from .errors import UsageError

MAGIC = "QUIRE-COVER/1"
NEXT = "NEXT"
# Titles longer than this are cut in the QR code (the sheet prints them whole): a smaller code has
# larger modules, which read better from a skewed 200 dpi scan.
QR_TITLE_CHARS = 24
# The band: left and top offsets, width and height (mm) on the A4 sheet.
BAND_MM = (15.0, 12.0, 180.0, 36.0)
_FONT = "STSong-Light"      # one of reportlab's built-in CID fonts: Chinese without a font file


@dataclass(frozen=True)
class Sheet:
    """What one cover sheet says: a material (archive number, item, title), or the generic next-material sheet."""

    archive_no: str | None = None
    item: str | None = None
    title: str = ""

    @property
    def generic(self) -> bool:
        return self.item is None


def sheets_for(archive_no: str, named: list[str], known: list[dict], generic: int = 0) -> list[Sheet]:
    """The sheets to print for a dossier: the materials ``named`` (``ITEM=TITLE``, or ``ITEM`` when
    ``known`` — its directory or queued batches, dicts with item and title — has its title), else every
    known one, in order; then ``generic`` next-material sheets."""
    if not archive_no:
        raise UsageError("a dossier archive number (档号) is required: --dossier D-0001")
    titles = {m["item"]: m.get("title") or "" for m in known}
    out = []
    for text in named:
        item, has_title, title = text.partition("=")
        try:
            parse_item(item)
        except ValueError as exc:
            raise UsageError(f"--item {text!r}: {exc}") from None
        title = title if has_title else titles.get(item, "")
        if not title:
            raise UsageError(f"material {item} of {archive_no} is neither in its directory nor queued; "
                             f"give its title: --item {item}=TITLE")
        out.append(Sheet(archive_no, item, title))
    if not named:
        out = [Sheet(archive_no, item, title) for item, title in titles.items()]
    return out + [Sheet(archive_no)] * generic


def payload(sheet: Sheet) -> str:
    """The QR code's text for a sheet."""
    if sheet.generic:
        return f"{MAGIC}\n{NEXT}" + (f"\n{sheet.archive_no}" if sheet.archive_no else "")
    return "\n".join([MAGIC, sheet.archive_no or "", sheet.item or "", sheet.title[:QR_TITLE_CHARS]])


def parse_payload(text: str) -> Sheet | None:
    """The sheet a QR code's text describes; None when it is not a Quire cover sheet (any other code)."""
    lines = text.split("\n")
    if not lines or lines[0] != MAGIC:
        return None
    if len(lines) >= 2 and lines[1] == NEXT:
        return Sheet(archive_no=lines[2] if len(lines) > 2 and lines[2] else None)
    if len(lines) != 4 or not lines[1] or not lines[2]:
        return None
    try:
        parse_item(lines[2])
    except ValueError:
        return None
    return Sheet(lines[1], lines[2], lines[3])


def write_pdf(path: str | Path, sheets: list[Sheet]) -> int:
    """Write the sheets as an A4 PDF, one page each; returns the number of pages."""
    if not sheets:
        raise UsageError("no cover sheets to print: name materials with --item ITEM=TITLE, queue them, "
                         "or ask for --generic")
    if _FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(_FONT))
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle("Quire cover sheets")
    for sheet in sheets:
        _draw(pdf, sheet)
        pdf.showPage()
    pdf.save()
    target = Path(path)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(out.getvalue())
    tmp.replace(target)
    return len(sheets)


def _draw(pdf: canvas.Canvas, sheet: Sheet) -> None:
    width, height = A4
    # A black band inside the printable area (clear of the paper's edges, so it never merges with a
    # scanner's dark backing): a large dark rectangle lets the station pass over ordinary pages cheaply
    # before it looks for a code at all.
    pdf.setFillGray(0)
    pdf.rect(BAND_MM[0] * mm, height - BAND_MM[1] * mm - BAND_MM[3] * mm, BAND_MM[2] * mm, BAND_MM[3] * mm,
             stroke=0, fill=1)
    pdf.setFillGray(1)
    pdf.setFont(_FONT, 30)
    pdf.drawCentredString(width / 2, height - 30 * mm, "下一份材料" if sheet.generic else "材料分隔页")
    pdf.setFont(_FONT, 11)
    pdf.drawCentredString(width / 2, height - 41 * mm, "QUIRE COVER SHEET  不属于档案材料，扫描时自动分隔")
    pdf.setFillGray(0)
    qr = segno.make(payload(sheet), error="q", micro=False)
    png = io.BytesIO()
    qr.save(png, kind="png", scale=10, border=4)
    png.seek(0)
    side = 80 * mm
    pdf.drawImage(ImageReader(png), (width - side) / 2, height - 55 * mm - side, side, side)
    y = height - 150 * mm
    if sheet.generic:
        pdf.setFont(_FONT, 40)
        pdf.drawCentredString(width / 2, y, "下一份材料")
        if sheet.archive_no:
            pdf.setFont(_FONT, 24)
            pdf.drawCentredString(width / 2, y - 20 * mm, f"档号 {sheet.archive_no}")
        pdf.setFont(_FONT, 14)
        pdf.drawCentredString(width / 2, y - 38 * mm, "放在下一份材料第一页之前（按目录顺序）")
        return
    pdf.setFont(_FONT, 24)
    pdf.drawCentredString(width / 2, y, f"档号 {sheet.archive_no}")
    pdf.setFont(_FONT, 54)
    pdf.drawCentredString(width / 2, y - 26 * mm, f"材料 {sheet.item}")
    pdf.setFont(_FONT, 22)
    for i, line in enumerate(_wrap(sheet.title, 18)[:4]):
        pdf.drawCentredString(width / 2, y - 46 * mm - i * 11 * mm, line)
    pdf.setFont(_FONT, 12)
    pdf.drawCentredString(width / 2, 20 * mm, "放在该材料第一页之前；此页图像作为分隔证据保存，不计入材料页数")


def _wrap(text: str, chars: int) -> list[str]:
    return [text[i:i + chars] for i in range(0, len(text), chars)] or [""]
