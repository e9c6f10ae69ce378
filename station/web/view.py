"""What the kiosk shows, read from the running daemon and from the station's store through a
connection of the kiosk's own (one reader thread: the scanning threads never wait on it)."""

import io
import json
import re
import threading
from datetime import datetime
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from PIL import Image

from quire.db import one
from quire.manifest import count_matches

from .. import notices
from ..home import open_station
from . import words

THUMB_WIDTHS = (240, 1200)      # the thumbnails' width, and a page opened to be read
THUMBS_KEPT = 256
HEX64 = re.compile(r"[0-9a-f]{64}")


class Reader:
    """The kiosk's reads of the store, on one thread of its own, with the thumbnails it made."""

    def __init__(self, config):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="quire-kiosk-read")
        self.station = self.pool.submit(open_station, config).result()
        self._thumbs: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.submit(self.station.close).result()
        self.pool.shutdown(wait=True)

    def latest_batch(self, archive_no: str | None = None, item: str | None = None) -> dict | None:
        """The newest batch of a material (its rescan, if any), or the newest of all; with its page count."""
        where, params = ("WHERE archive_no = ? AND item = ?", [archive_no, item]) if archive_no else ("", [])
        return one(self.station.store.db, "SELECT b.*, (SELECT COUNT(*) FROM pages p WHERE p.batch_id = b.id) AS pages"
                   f" FROM batches b {where} ORDER BY started_at DESC, rowid DESC LIMIT 1", params)

    def last_receipt(self) -> str | None:
        return one(self.station.store.db, "SELECT MAX(committed_at) AS at FROM bundles")["at"]

    def thumbnail(self, archive_no: str, item: str, n: int, width: int) -> bytes | None:
        """Page ``n`` of the material's newest batch as a JPEG ``width`` pixels wide; None: no such page."""
        batch = self.latest_batch(archive_no, item)
        if batch is None:
            return None
        page = one(self.station.store.db, "SELECT sha256, media_type FROM pages WHERE batch_id = ? AND n = ?",
                   [batch["id"], n])
        if page is None:
            return None
        return self._thumbnail(page["sha256"], page["media_type"], width)

    def sheet_thumbnail(self, sha256: str, width: int) -> bytes | None:
        """A cover sheet's image (kept as evidence, named by its hash) as a thumbnail; None: no such image."""
        if not HEX64.fullmatch(sha256) or not self.station.store.page_path(sha256, "image/jpeg").exists():
            return None
        return self._thumbnail(sha256, "image/jpeg", width)

    def _thumbnail(self, sha256: str, media_type: str, width: int) -> bytes:
        key = (sha256, width)
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        with Image.open(self.station.store.page_path(sha256, media_type)) as image:
            # A JPEG decodes at 1/2…1/8 scale straight away: the thumbnail costs a fraction of the page.
            height = max(1, round(width * image.height / image.width))
            image.draft("RGB" if image.mode == "RGB" else "L", (width, height))
            image = image.convert("RGB" if image.mode == "RGB" else "L")
            image.thumbnail((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=80)
        data = out.getvalue()
        with self._lock:
            self._thumbs[key] = data
            while len(self._thumbs) > THUMBS_KEPT:
                self._thumbs.popitem(last=False)
        return data


def page_url(archive_no: str, item: str, n: int, version: str, width: int = THUMB_WIDTHS[0]) -> str:
    """A page's image; ``version`` (the page's hash, or the scan's job) makes a rescanned page a new address."""
    return "/page?" + urlencode({"d": archive_no, "i": item, "n": n, "w": width, "v": version})


def page_view(archive_no: str, item: str, n: int, record: dict, version: str, group: str | None = None) -> dict:
    """A page's thumbnail and flags; ``group``: the material it belongs to on a dossier feed's screen."""
    return {"n": n, "src": page_url(archive_no, item, n, version),
            "large": page_url(archive_no, item, n, version, THUMB_WIDTHS[1]),
            "flags": words.flags(record), "blank": bool(record.get("blank")), "group": group}


# -- a whole dossier fed by cover sheets: one group per material, its sheet a marked separator --------------

def dossier_groups(reader: Reader, daemon, chosen: tuple[str, str] | None = None) -> list[dict] | None:
    """The materials of the dossier feed the screen follows (the last one run by cover sheets), in feed order;
    None when the screen shows a single material."""
    run = daemon.dossier_run
    if run is None or chosen:
        return None
    batches = [b for b in reader.station.store.batches() if b["archive_no"] == run["archive_no"]]
    shown = [b for b in batches if (json.loads(b["material_json"]).get("cover_sheet") or {}).get("feed_page")]
    shown.sort(key=lambda b: json.loads(b["material_json"])["cover_sheet"]["feed_page"])
    return [group(reader, run["archive_no"], json.loads(b["material_json"])) for b in shown]


def group(reader: Reader, archive_no: str, material: dict) -> dict:
    """One material of a dossier feed: its cover sheet, its pages so far, its count against the directory."""
    item = material["item"]
    batch = reader.latest_batch(archive_no, item)
    if batch is not None:
        material = {**json.loads(batch["material_json"]), **material}
    sheet = material.get("cover_sheet") or {}
    pages = []
    if batch is not None:
        pages = [page_view(archive_no, item, r["n"], json.loads(r["record_json"]), r["sha256"][:12], group=item)
                 for r in reader.station.store.pages(batch["id"])]
    entry = reader.station.store.directory_entry(archive_no, item)
    state = batch["state"] if batch is not None else "open"
    found = len(pages)
    blank = sum(1 for p in pages if p["blank"])
    matches = entry is None or count_matches({"expected": entry["pages"], "found": found, "blank": blank})
    return {"item": item, "title": material.get("title") or "", "archive_no": archive_no,
            "feed_page": sheet.get("feed_page"), "back": bool(sheet.get("back")),
            "sheet_src": "/sheet?" + urlencode({"h": sheet["sha256"], "w": THUMB_WIDTHS[0]}) if sheet.get("sha256")
            else None, "pages": pages, "found": found, "expected": entry["pages"] if entry else None,
            "matches": matches, "state": state,
            "state_words": {"open": "扫描中", "interrupted": "已中断，可继续", "sealed": "已封装",
                            "review": "待复核（尚未封装）"}.get(state, state),
            "review_url": "/?" + urlencode({"d": archive_no, "i": item}) if state == "review" else None}


def refused(event: dict) -> str:
    """A refusal the screen shows: a cover sheet that does not belong, worded with what to do; else as told."""
    words_for = REFUSALS.get(event.get("kind") or "")
    if words_for is None:
        return event.get("message") or ""
    return "分隔页有误，已停止：" + words_for.format(**(event.get("facts") or {}))


REFUSALS = {
    "other-dossier": "进纸第 {feed_page} 页是档案 {other} 的分隔页，不属于本卷 {dossier}。"
                     "请把这张分隔页和其后属于 {other} 的各页取出，再把其余的纸放回进纸器，按“扫描”继续。",
    "seen-twice": "材料 {item} 的分隔页在进纸第 {feed_page} 页又出现了一次（第一次在进纸第 {first_page} 页）。"
                  "请取出多余的这张，核对其后各页应属哪份材料，再从这里放回进纸器，按“扫描”继续。",
    "sealed": "进纸第 {feed_page} 页是材料 {item} 的分隔页，而该材料在本工作站已封装。请取出这张分隔页和该材料的各页"
              "（需重扫请另行申请），再把其余的纸放回进纸器，按“扫描”继续。",
    "no-sheet-first": "进纸第 {feed_page} 页不是分隔页，本卷也没有中断待续的材料。请把第一份材料的分隔页放在最上面，"
                      "整卷重新放入进纸器，按“扫描”。",
    "generic-none-left": "进纸第 {feed_page} 页是“下一份材料”通用分隔页，但本卷目录中已没有未扫描的材料（或没有目录）。"
                         "请改用该材料自己的分隔页，或先导入本卷目录。",
    "empty-last": "材料 {item} 的分隔页（进纸第 {feed_page} 页）之后没有任何页面。请把该材料的各页放在它的分隔页之后再扫描。",
    "empty-between": "材料 {item} 的分隔页之后紧接着又是一张分隔页（进纸第 {feed_page} 页）。"
                     "请把材料 {item} 的各页放在两张分隔页之间，从它的分隔页起重新放入进纸器。",
}


def scanner_state(daemon) -> dict:
    """The scanner's state in a word or two, its colour class, and what to do."""
    if daemon.stopping:
        return {"word": "工作站服务正在停止", "cls": "stop", "todo": "服务重启后即可继续扫描。"}
    if daemon.current is not None:
        return {"word": "正在扫描", "cls": "busy", "todo": "页面逐张出现在下方；请留意标为黄色的页面。"}
    stop = daemon.last_stop
    if stop is not None:
        word, todo = words.stop(stop["kind"], stop["resume_at"])
        if stop.get("feed"):
            todo += "（整卷进纸的页序，分隔页也算一页；已封装的材料不必再放）"
        return {"word": word, "cls": "stop", "todo": todo, "detail": stop["message"]}
    head = daemon.jobs.head()
    if head and head.get("refusal"):
        return {"word": "分隔页有误", "cls": "stop", "detail": head["last_error"],
                "todo": refused({"kind": head["refusal"]["kind"], "facts": head["refusal"]["facts"],
                                 "message": head["last_error"]})}
    if head and head.get("last_error"):
        return {"word": "上次扫描中断", "cls": "stop", "detail": head["last_error"],
                "todo": "按说明处理后，把尚未扫描的纸放回进纸器，再按“扫描”继续。"}
    if not daemon.scanner.ready:
        return {"word": "未连接扫描仪", "cls": "stop", "detail": daemon.scanner.describe(),
                "todo": "确认扫描仪已开机、USB 线已接好；工作站每隔几秒自动重新查找。"}
    if head is None:
        return {"word": "就绪", "cls": "ok", "todo": "先在下方“登记材料”，再把材料放入进纸器按“扫描”。"}
    return {"word": "就绪", "cls": "ok", "todo": "把材料放入进纸器，按“扫描”。"}


def shown_batch(daemon, reader: Reader, chosen: tuple[str, str] | None = None) -> tuple[dict | None, dict | None]:
    """The batch the screen shows (being scanned, else the one the operator chose to review, else the
    last stopped, else the newest) and its job."""
    if daemon.current is None and chosen and chosen[0]:
        batch = reader.latest_batch(*chosen)
        if batch is not None:
            return batch, None
    job = daemon.current or (daemon.last_stop or {}).get("job")
    if job is None:
        return reader.latest_batch(), None
    return reader.latest_batch(job["dossier"]["archive_no"], job["material"]["item"]), job


def batch_view(batch: dict | None, job: dict | None) -> dict | None:
    if batch is None and job is None:
        return None
    material = json.loads(batch["material_json"]) if batch else job["material"]
    dossier = json.loads(batch["dossier_json"]) if batch else job["dossier"]
    state = {"open": "扫描中", "interrupted": "已中断，可继续", "review": "待复核（尚未封装）",
             "sealed": "已封装"}.get(batch["state"], "") if batch else "扫描中"
    return {"archive_no": dossier["archive_no"], "name": dossier.get("name") or "", "item": material["item"],
            "title": material.get("title") or "", "state": state, "pages": batch["pages"] if batch else 0,
            "operator": batch["operator"] if batch else job["operator"],
            "in_review": bool(batch) and batch["state"] == "review"}


def count_view(reader: Reader, batch: dict | None, shown: dict | None) -> dict | None:
    """The batch's pages against the dossier's directory (None: no directory entry for the material)."""
    if shown is None:
        return None
    entry = reader.station.store.directory_entry(shown["archive_no"], shown["item"])
    if entry is None:
        return None
    blank = 0
    if batch is not None:
        blank = sum(1 for p in reader.station.store.pages(batch["id"]) if json.loads(p["record_json"]).get("blank"))
    found = shown["pages"]
    kept = batch.get("count_confirmation") if batch is not None else None
    confirmed = json.loads(kept) if kept else None
    return {"expected": entry["pages"], "found": found, "blank": blank,
            "matches": count_matches({"expected": entry["pages"], "found": found, "blank": blank}),
            "confirmed": confirmed["reason"] if confirmed and confirmed.get("found") == found else None}


ACTIONS = {"rescan": "重扫", "insert": "补插", "remove": "移除"}


def edits_view(reader: Reader, batch: dict | None) -> list[dict]:
    """Every pre-seal edit of the batch: what, which page, why, who, when (nothing vanishes without a trace)."""
    if batch is None:
        return []
    return [{"what": ACTIONS.get(e["action"], e["action"]), "n": e["n"], "reason": e["reason"],
             "operator": e["operator"], "at": local_time(e["at"])} for e in reader.station.store.edits(batch["id"])]


def local_time(stamp: str | None) -> str | None:
    """An RFC 3339 UTC time as the station's clock shows it: 12-03 11:58:01."""
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%m-%d %H:%M:%S")


def live(daemon, reader: Reader, chosen: tuple[str, str] | None = None) -> dict:
    """Everything the live part of the screen shows (not the thumbnails)."""
    batch, job = shown_batch(daemon, reader, chosen)
    held = notices.held(reader.station)
    shown = batch_view(batch, job)
    return {
        "scanner": scanner_state(daemon),
        "batch": shown,
        "count": count_view(reader, batch, shown),
        "edits": edits_view(reader, batch),
        "reviews": [{"archive_no": b["archive_no"], "item": b["item"], "title": b["title"], "pages": b["pages"],
                     "url": "/?" + urlencode({"d": b["archive_no"], "i": b["item"]})}
                    for b in reader.station.store.batches("review")],
        "queue": daemon.jobs.jobs(),
        "current": daemon.current and daemon.current["id"],
        "outbox": daemon.outbox,
        "central": words.central(daemon.sync.state if daemon.sync else "central not contacted yet"),
        "last_receipt": local_time(reader.last_receipt()),
        "notices": [notice_words(n) for n in held[-5:]],
        "station_id": reader.station.station_id,
    }


def pages(reader: Reader, daemon, chosen: tuple[str, str] | None = None) -> tuple[dict | None, list[dict]]:
    """The shown batch's stored pages, for the first paint (later ones arrive as events)."""
    batch, _ = shown_batch(daemon, reader, chosen)
    if batch is None:
        return None, []
    rows = reader.station.store.pages(batch["id"])
    return batch, [page_view(batch["archive_no"], batch["item"], r["n"], json.loads(r["record_json"]), r["sha256"][:12])
                   for r in rows]


def notice_words(notice: dict) -> str:
    if notice.get("kind", "rescan") == "rescan" and "pages" in notice:
        listed = "、".join(f"第 {p['n']} 页" + (f"（{p['reason']}）" if p.get("reason") else "") for p in notice["pages"])
        return (f"RESCAN 需重扫 {notice['archive_no']} {notice['item']}：质检员 {notice['inspector']} 退回该批次"
                f"（合格率 {notice['good_share'] * 100:.0f}%）— {listed}。请重扫该材料并同步，之后由档案员替换。")
    return notices.describe(notice)
