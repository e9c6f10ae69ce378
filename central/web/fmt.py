"""Dates, numbers and labels the Chinese way (Beijing time, 年月日, 万), for the templates."""

from datetime import datetime
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")

# The ten categories of a cadre dossier (干部档案十大类), with 4 and 9 in their sub-categories.
CATEGORIES = {
    "1": "履历材料", "2": "自传和思想材料", "3": "考核鉴定材料",
    "4": "学历学位、专业技术职务、学术评鉴和教育培训材料", "5": "政审、审计和审核材料",
    "6": "党、团材料", "7": "表彰奖励材料", "8": "违规违纪违法处理处分材料",
    "9": "工资、任免、出国和会议代表等材料", "10": "其他可供组织参考的材料",
}
ROLE_NAMES = {"admin": "系统管理员", "security_officer": "安全保密员", "auditor": "安全审计员",
              "archivist": "档案管理员", "inspector": "质检员", "reader": "查阅人"}
STATES = {"requested": "待审批", "approved": "已批准", "refused": "未批准", "none": "未申请",
          "proposed": "待复核", "applied": "已生效", "sampling": "抽检中", "accepted": "验收通过",
          "returned": "退回重扫", "waiting": "待抽检", "expired": "已到期", "ended": "已终止"}
KINDS = {"personnel": "干部人事档案", "integrity": "廉政档案", "party-building": "党建档案"}
CHANGE_KINDS = {"replace_material": "替换材料", "withdraw_material": "撤出材料", "edit_dossier": "修改档案信息",
                "revoke_station": "吊销扫描站"}
FIELDS = {"name": "姓名", "sex": "性别", "birth_date": "出生日期", "post": "职务", "kind": "档案类别"}


def when(stamp: str | None, seconds: bool = False) -> str:
    """An archive timestamp (UTC, RFC 3339) as Beijing time: 2026年5月3日 14:05."""
    if not stamp:
        return ""
    t = datetime.fromisoformat(stamp).astimezone(BEIJING)
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M}" + (f":{t:%S}" if seconds else "")


def day(text: str | None) -> str:
    """A calendar day YYYY-MM-DD as 2026年5月3日 (a partial date as far as it goes)."""
    if not text:
        return ""
    parts = [int(p) for p in text.split("-") if p.isdigit()]
    return "".join(f"{v}{unit}" for v, unit in zip(parts, "年月日"))


def number(n: int | float | None) -> str:
    """Grouped the Chinese way: 12,345 below 10 万, then 12.3万, 1.2亿."""
    if n is None:
        return "—"
    if abs(n) >= 100_000_000:
        return f"{n / 100_000_000:.1f}亿"
    if abs(n) >= 100_000:
        return f"{n / 10_000:.1f}万"
    return f"{n:,}" if isinstance(n, int) else f"{n:,.1f}"


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f}%"


def megabytes(n: int | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"


def category(item: str) -> str:
    """The category an item belongs to: 4-1-2 → 四 …; its number first (4-1)."""
    return item.split("-")[0]


FILTERS = {"when": when, "day": day, "number": number, "percent": percent, "megabytes": megabytes,
           "role": lambda r: ROLE_NAMES.get(r, r), "state": lambda s: STATES.get(s, s),
           "kind": lambda k: KINDS.get(k, k), "change_kind": lambda k: CHANGE_KINDS.get(k, k),
           "field": lambda f: FIELDS.get(f, f)}
