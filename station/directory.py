"""Dossiers' directories (目录): each material's item, title, date formed, page count and remarks.

Imported from a CSV file (UTF-8 with or without a BOM, or GB18030 as Excel in China saves it), an
Excel workbook (.xlsx, its first sheet), or fetched from the archive's catalogue. A file is checked
whole before anything is kept: every bad cell is reported with its row and column and what to write
instead, and a file with any problem changes nothing. The page counts are what sealing checks.
"""

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import grpc

from quire.catalogue import parse_item
from quire.db import atomic
from quire.manifest import count_matches
from quire.v1 import sync_pb2, sync_pb2_grpc

from .errors import CentralUnreachable, StationError, SyncError, UsageError
from .home import Station
from .transport import explain_unavailable, open_channel

# Column headings as directories write them (GB/T 33870 目录 and common variants), with English names too.
COLUMNS = {
    "archive_no": ("档号", "档案号", "archive_no", "archive number"),
    "item": ("类号", "材料编号", "item"),
    "seq": ("序号", "seq"),
    "title": ("材料名称", "题名", "材料题名", "title"),
    "date_formed": ("形成时间", "材料形成时间", "制成日期", "形成日期", "date_formed", "date formed"),
    "pages": ("页数", "pages", "page_count"),
    "remarks": ("备注", "remarks"),
}
REQUIRED = ("item", "title", "pages")
_HEADER_ROWS = 10       # a title line or two ("干部档案目录", the person's name) may stand above the headings
_DATE = re.compile(r"(\d{4})(?:[-./年](\d{1,2})(?:[-./月](\d{1,2})日?)?月?)?")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})?")
_PAGES = re.compile(r"(\d+)\s*页?")


class DirectoryError(StationError):
    """A directory file that cannot be imported as it is; nothing of it was kept."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str],
                 head: str = "nothing was imported; correct the file and import it again"):
        self.problems = problems
        shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__(f"{source}: {head}:\n  " + "\n  ".join(shown))


@dataclass(frozen=True)
class Imported:
    dossiers: dict[str, int]        # archive number → materials imported


def import_file(station: Station, path: str | Path, dossier: str | None = None) -> Imported:
    """Check the whole file, then replace the directory of each dossier it lists, all in one transaction."""
    path = Path(path)
    entries = read_file(path, dossier)
    by_dossier: dict[str, list[dict]] = {}
    for entry in entries:
        by_dossier.setdefault(entry.pop("archive_no"), []).append(entry)
    with atomic(station.store.db):
        for archive_no, items in by_dossier.items():
            station.store.replace_directory(archive_no, items, f"file {path.name}")
    return Imported({k: len(v) for k, v in by_dossier.items()})


def read_file(path: Path, dossier: str | None = None) -> list[dict]:
    """Every row of a directory file, checked; raise DirectoryError listing every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror}); give the directory's CSV or .xlsx file") from None
    if path.suffix.lower() == ".xlsx" or data[:4] == b"PK\x03\x04":
        table = _xlsx_rows(path, data)
    elif path.suffix.lower() == ".xls":
        raise UsageError(f"{path} is an old Excel file (.xls); open it in Excel or WPS and save it as .xlsx or CSV")
    else:
        table = _csv_rows(path, data)
    return _entries(str(path.name), table, dossier)


def _csv_rows(path: Path, data: bytes) -> list[tuple[int, list]]:
    text = None
    # Excel's "Unicode text" is UTF-16 with its byte-order mark; its "CSV UTF-8" has a UTF-8 one; plain
    # "CSV" on a Chinese Windows is GB18030 (a superset of GBK/GB2312).
    encodings = ("utf-16",) if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise UsageError(f"{path} is neither UTF-8 nor GB18030 text; save it from Excel as CSV (UTF-8)")
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = []
    for row in reader:
        out.append((reader.line_num, row))
    return out


def _xlsx_rows(path: Path, data: bytes) -> list[tuple[int, list]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise UsageError(f"{path} is not a readable .xlsx workbook ({exc}); save it again from Excel or WPS") from None
    try:
        sheet = book.worksheets[0]
        return [(n, list(row)) for n, row in enumerate(sheet.iter_rows(values_only=True), 1)]
    finally:
        book.close()


def _heading(cell) -> str:
    """A heading as compared: no spaces, no unit in brackets ("页数（页）" is 页数), lower case."""
    text = re.sub(r"[\s\u3000]+", "", str(cell or ""))
    return re.sub(r"[（(][^）)]*[）)]$", "", text).lower()


def _find_header(table: list[tuple[int, list]]) -> tuple[int, dict[str, int]] | None:
    names = {_heading(alias): field for field, aliases in COLUMNS.items() for alias in aliases}
    for index, (_, row) in enumerate(table[:_HEADER_ROWS]):
        found = {}
        for col, cell in enumerate(row):
            field = names.get(_heading(cell))
            if field and field not in found:
                found[field] = col
        if all(field in found for field in REQUIRED):
            return index, found
    return None


def _entries(name: str, table: list[tuple[int, list]], dossier: str | None) -> list[dict]:
    header = _find_header(table)
    if header is None:
        wanted = ", ".join(COLUMNS[f][0] for f in REQUIRED)
        raise DirectoryError(name, [f"no heading row with the columns {wanted} (and 档号, 形成时间, 备注 when "
                                    "known) in its first rows; put the headings above the materials"])
    index, columns = header
    heading = {field: str(table[index][1][col]).strip() for field, col in columns.items()}
    # The printed 干部档案目录 form divides 材料形成时间 into 年, 月 and 日 on a second heading row.
    parts = _date_parts(table[index + 1][1]) if index + 1 < len(table) else None
    if parts:
        index += 1
        columns = {k: v for k, v in columns.items() if k != "date_formed"} | parts
        heading |= {field: {"year": "年", "month": "月", "day": "日"}[field] for field in parts}
        heading.setdefault("date_formed", "年")
    if "archive_no" not in columns and not dossier:
        raise DirectoryError(name, ["the file has no 档号 column; give the dossier's archive number with "
                                    "--dossier D-0001, or add a 档号 column"])
    problems: list[str] = []
    entries: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in table[index + 1:]:
        cells = {field: row[col] if col < len(row) else None for field, col in columns.items()}
        if all(_blank(v) for v in cells.values()):
            continue
        bad = []

        def wrong(field: str, message: str, _zh: str = "") -> None:
            bad.append(f"row {line}, column {heading[field]}: {message}")

        if parts:
            cells["date_formed"] = _joined_date(cells, wrong)
        entry = {"archive_no": _archive_no(cells, dossier, wrong), "item": _item(cells, wrong),
                 "title": _text(cells.get("title")), "date_formed": _date(cells.get("date_formed"), wrong),
                 "pages": _pages(cells["pages"], wrong), "remarks": _text(cells.get("remarks")) or None}
        _title(entry["title"], wrong)
        key = (entry["archive_no"], entry["item"])
        if not bad and key in seen:
            bad.append(f"row {line}: material {entry['item']} of {entry['archive_no']} is listed twice (row "
                       f"{seen[key]} too); give each material its own item number")
        problems += bad
        if not bad:
            seen[key] = line
            entries.append(entry)
    if not problems and not entries:
        problems.append("the file lists no materials below its headings")
    if problems:
        raise DirectoryError(name, problems)
    return entries


def _date_parts(row: list) -> dict[str, int] | None:
    """The columns of 年, 月 and 日 on the row below the headings, when the form divides the date so."""
    found = {}
    for col, cell in enumerate(row):
        field = {"年": "year", "月": "month", "日": "day"}.get(_heading(cell))
        if field:
            found[field] = col
    return found if "year" in found else None


def _joined_date(cells: dict, wrong) -> str | None:
    """年, 月, 日 cells as one date text ("1998-7", "1998"), checked by _date; none when the year is empty."""
    year, month, day = (_text(cells.get(k)) for k in ("year", "month", "day"))
    if not year:
        if month or day:
            wrong("year", "empty while 月 or 日 is filled; write the year (e.g. 1998)")
        return None
    if day and not month:
        wrong("month", "empty while 日 is filled; write the month")
        return None
    return "-".join(part for part in (year, month, day) if part)


def _blank(value) -> bool:
    return value is None or str(value).strip() == ""


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _archive_no(cells: dict, dossier: str | None, wrong) -> str:
    found = _text(cells.get("archive_no"))
    if found and dossier and found != dossier:
        wrong("archive_no", f"{found!r} is another dossier than --dossier {dossier}; import each dossier's "
                            "directory on its own, or leave --dossier out")
    if not found and not dossier:
        wrong("archive_no", "empty; write the dossier's archive number (档号), or give --dossier")
    return found or dossier or ""


def _item(cells: dict, wrong) -> str:
    value = cells.get("item")
    if isinstance(value, (dt.date, dt.datetime)):
        wrong("item", f"Excel turned the item number into the date {value:%Y-%m-%d}; format the 类号 column "
                      "as text and type it again (e.g. 4-1)",
              f"Excel 把类号变成了日期 {value:%Y-%m-%d}；把类号列设为文本后重新填写（如 4-1）")
        return ""
    text = _text(value).replace("—", "-").replace("－", "-")
    seq = _text(cells.get("seq"))
    if seq and text and text.count("-") < (2 if text.split("-")[0] in ("4", "9") else 1):
        text = f"{text}-{seq}"          # 类号 holds the category, 序号 the number within it
    try:
        parse_item(text)
    except ValueError as exc:
        wrong("item", f"{exc}", (f"“{text}”不是类号" if text else "未填写") + "：写成 类别-序号（如 1-1、10-2），"
              "第 4 类和第 9 类写成 类别-小类-序号（如 4-1-2、9-3-1，小类为 1–4），序号从 1 起")
        return ""
    return text


def _date(value, wrong) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = _text(value)
    m = _DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    if m:
        year, month, day = m.group(1), m.group(2), m.group(3)
        try:
            dt.date(int(year), int(month or 1), int(day or 1))
            return "-".join([year] + [f"{int(p):02d}" for p in (month, day) if p])
        except ValueError:
            pass
    wrong("date_formed", f"{text!r} is not a date; write it as YYYY-MM-DD, YYYY-MM or YYYY (e.g. 1995-03-12)",
          f"“{text}”不是日期：写成 YYYY、YYYYMM 或 YYYYMMDD（如 1995、199503、19950312），也可写 1995-03-12；"
          "不知道可以不填")
    return None


def _pages(value, wrong) -> int:
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int) or isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        m = _PAGES.fullmatch(_text(value))
        if not m:
            shown = "empty" if _blank(value) else f"{_text(value)!r} is not a whole number of pages"
            zh = "未填写" if _blank(value) else f"“{_text(value)}”不是整数"
            wrong("pages", f"{shown}; write the material's page count as a number, e.g. 12",
                  f"{zh}：填写该材料的页数（整数，至少 1），如 12")
            return 0
        number = int(m.group(1))
    if number < 1:
        wrong("pages", f"{number} pages; a material has at least one page — write its page count",
              f"{number} 页：每份材料至少 1 页，填写它的实际页数")
    return number


def _title(title: str, wrong) -> None:
    if not title:
        wrong("title", "the material's title is empty; write its name, e.g. 干部履历表",
              "未填写：写材料的名称，如 干部履历表")


# -- typed in (the kiosk, the CLI) ---------------------------------------------------------

NAMES = {"archive_no": "档号", "item": "类号", "title": "材料名称", "date_formed": "形成时间", "pages": "页数",
         "remarks": "备注"}


class EntryRefused(DirectoryError):
    """A typed directory row not kept: ``cells`` holds each bad cell's field and what to write there."""

    def __init__(self, where: str, cells: list[tuple[str, str]], zh: bool = False):
        self.cells = cells
        if zh:
            self.problems = [f"{NAMES[field]}：{words}" for field, words in cells]
            StationError.__init__(self, f"{where}未保存：" + "；".join(self.problems))
        else:
            super().__init__(where, [f"{NAMES[field]}: {words}" for field, words in cells],
                             "not kept in the directory; correct it and try again")


def check_entry(item, title, pages, date_formed=None, remarks=None, *, zh: bool = False
                ) -> tuple[dict, list[tuple[str, str]]]:
    """A typed row checked by the rules a file's row meets: the entry and its bad cells (field, what to write)."""
    cells: list[tuple[str, str]] = []

    def wrong(field: str, message: str, in_chinese: str = "") -> None:
        cells.append((field, in_chinese if zh and in_chinese else message))

    entry = {"item": _item({"item": item}, wrong), "title": _text(title), "date_formed": _date(date_formed, wrong),
             "pages": _pages(pages, wrong), "remarks": _text(remarks) or None}
    _title(entry["title"], wrong)
    return entry, cells


def put_entry(station: Station, archive_no: str, item: str, title: str, pages, date_formed=None,
              remarks=None, *, replacing: str | None = None, new: bool = False, zh: bool = False) -> dict:
    """Add one material to the dossier's directory, or correct it (keeping its place); checked as a file's row.

    ``replacing``: the item of the row being corrected, when its 类号 may change; ``new``: refuse an item the
    directory already lists instead of correcting it; ``zh``: problems worded in Chinese (the kiosk)."""
    archive_no = (archive_no or "").strip()
    entry, cells = check_entry(item, title, pages, date_formed, remarks, zh=zh)
    where = f"{archive_no} {_text(item)}" + (" " if zh else "")
    if not archive_no:
        cells.insert(0, ("archive_no", "未填写：先写档号" if zh else "empty; give the dossier's archive number"))
    if cells:
        raise EntryRefused(where, cells, zh)
    listed = {e["item"]: e for e in station.store.directory(archive_no)}
    if entry["item"] in listed and (new or replacing not in (None, entry["item"])):
        position = listed[entry["item"]]["position"]
        raise EntryRefused(where, [("item", f"类号 {entry['item']} 已在第 {position} 行；改那一行，或换一个类号" if zh else
                                    f"{entry['item']} is already row {position}; correct that row or give another item")],
                           zh)
    if replacing is not None and replacing != entry["item"]:
        if replacing not in listed:
            raise EntryRefused(where, [("item", f"原类号 {replacing} 已不在目录中（可能已被删除），请刷新页面" if zh else
                                        f"{replacing} is no longer in the directory; show it again")], zh)
        scanned = _scanned(station, archive_no, replacing, zh)
        if scanned:
            raise EntryRefused(where, [("item", f"{scanned}，类号不能再改（扫描记录按此类号保存）" if zh else
                                        f"{scanned}; its item cannot change (the scan is filed under it)")], zh)
    station.store.put_directory_entry(archive_no, entry, "typed", replacing=replacing)
    return entry


def remove_entry(station: Station, archive_no: str, item: str, *, zh: bool = False) -> None:
    """Take a material out of the dossier's directory; refused once it is scanned or sealed, saying why."""
    listed = {e["item"]: e for e in station.store.directory(archive_no)}
    if item not in listed:
        raise EntryRefused(f"{archive_no} {item} ", [("item", "目录中已没有这一行，请刷新页面" if zh else
                                                      "not in the directory; show it again")], zh)
    scanned = _scanned(station, archive_no, item, zh)
    if scanned:
        why = (f"第 {listed[item]['position']} 行（类号 {item}）{scanned}，不能删除：封装时按这一行核对页数，"
               "删除会让扫描记录失去对应的目录" if zh else
               f"{scanned}; it cannot be removed: sealing checks its page count against this row")
        raise EntryRefused(f"{archive_no} {item} ", [("item", why)], zh)
    station.store.remove_directory_entry(archive_no, item)


def _scanned(station: Station, archive_no: str, item: str, zh: bool) -> str | None:
    """How far the material is scanned on this station, in words; None when not at all."""
    batch = station.store.last_batch(archive_no, item)
    if batch is None:
        return None
    if batch["state"] == "sealed":
        return "已封装" if zh else "already sealed"
    found = len(station.store.pages(batch["id"]))
    return f"已开始扫描（已存 {found} 页）" if zh else f"already being scanned ({found} pages stored)"


# -- showing -------------------------------------------------------------------------------


def show(station: Station, archive_no: str) -> list[dict]:
    """The dossier's directory with how far each material is scanned on this station."""
    entries = station.store.directory(archive_no)
    if not entries:
        raise UsageError(f"no directory of {archive_no} on this station; import it with 'quire-station directory "
                         f"import FILE' or fetch it with 'quire-station directory fetch {archive_no}'")
    out = []
    for entry in entries:
        batch = station.store.last_batch(archive_no, entry["item"])
        pages = station.store.pages(batch["id"]) if batch else []
        blank = sum(1 for p in pages if json.loads(p["record_json"]).get("blank"))
        out.append(dict(entry, state=batch["state"] if batch else None, scanned=len(pages) if batch else None,
                        blank=blank, matches=bool(batch) and count_matches(
                            {"expected": entry["pages"], "found": len(pages), "blank": blank})))
    return out


# -- from the archive ----------------------------------------------------------------------


def fetch(station: Station, archive_no: str, central: str | None = None) -> int:
    """Replace the dossier's directory with the archive's catalogue of it (its unit permitting); how many
    materials it lists."""
    address = central or station.config.central or station.store.get_meta("central_address")
    if not address:
        raise SyncError("no central service known; run 'quire-station enroll --central HOST:PORT' "
                        "or set 'central' in station.toml")
    channel = open_channel(station, address)
    try:
        reply = sync_pb2_grpc.StationSyncStub(channel).Directory(
            sync_pb2.DirectoryRequest(station_id=station.station_id, archive_no=archive_no),
            timeout=station.config.sync_timeout_s)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise UsageError(exc.details()) from None
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise explain_unavailable(station, address, exc) from None
        raise CentralUnreachable(f"the archive at {address} did not give the directory of {archive_no} "
                                 f"({exc.code().name}: {exc.details()})") from None
    finally:
        channel.close()
    entries = [{"item": e.item, "title": e.title, "date_formed": e.date_formed or None, "pages": e.pages,
                "remarks": e.remarks or None} for e in reply.entries]
    station.store.replace_directory(archive_no, entries, f"archive {address}")
    return len(entries)
