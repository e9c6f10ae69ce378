"""What the kiosk says, in Chinese: the scanner's state and what to do, the archive's, a page's flags."""

# A stopped batch's error class → (state shown, what the operator does). {page}: where the batch resumes.
STOPS = {
    "ScannerJammed": ("卡纸", "打开扫描仪清除卡纸，把从第 {page} 页起尚未扫描的纸按原顺序放回进纸器，再按“扫描”继续。"),
    "CoverOpen": ("扫描仪盖板未合上", "合上盖板，检查进纸器里的纸，再按“扫描”从第 {page} 页继续。"),
    "FeederEmpty": ("进纸器无纸", "把材料放入进纸器（正面朝向按扫描仪标示），再按“扫描”。"),
    "DeviceBusy": ("扫描仪被其他程序占用", "关闭占用扫描仪的程序或稍候，再按“扫描”从第 {page} 页继续。"),
    "ScannerIOError": ("扫描仪连接中断", "检查 USB 线和电源，再按“扫描”从第 {page} 页继续。"),
    "ScannerNotFound": ("找不到扫描仪", "确认扫描仪已开机并连接好；仍找不到请联系技术人员。"),
    "ScannerDriverFailed": ("扫描仪驱动已重启", "工作站已自动重启驱动。检查进纸器，把未完整送出的纸放回，再按“扫描”从第 {page} 页继续。"),
    "ScannerDriverHung": ("扫描仪驱动无响应，已重启", "工作站已自动重启驱动。检查进纸器，把未完整送出的纸放回，再按“扫描”从第 {page} 页继续。"),
    "ScannerDriverCrashed": ("扫描仪驱动意外退出，已重启", "工作站已自动重启驱动。检查进纸器，把未完整送出的纸放回，再按“扫描”从第 {page} 页继续。"),
    "BatchStopped": ("工作站服务正在停止", "服务恢复后，把尚未扫描的纸放回进纸器，按“扫描”从第 {page} 页继续。"),
    "StationDiskFull": ("工作站磁盘已满", "请联系技术人员清理磁盘；已扫描的页面都已保存。"),
}
STOP_DEFAULT = ("扫描仪故障", "检查扫描仪，再按“扫描”从第 {page} 页继续。")

# SyncWorker.state → what the operator reads about the archive.
CENTRAL = {
    "central not contacted yet": "尚未联系档案馆",
    "central not configured": "未配置档案馆（请技术人员登记本工作站）",
    "central not enrolled": "本工作站尚未在档案馆登记（请技术人员处理）",
    "central KEY MISMATCH, nothing sent": "档案馆密钥不符，未发送任何数据（请立即联系技术人员）",
    "central offline": "档案馆暂时无法连接（已封装的材料安全保存在本机，恢复后自动上传）",
    "central sync failing": "上传出错（请技术人员查看日志）",
    "central HISTORY ALARM": "档案馆历史记录告警（请立即联系技术人员）",
    "central refuses this station": "档案馆拒绝本工作站（请技术人员处理）",
    "central online": "档案馆在线",
    "sync stopped": "上传已停止",
}

COLOUR_FOUND = {"red": "红色内容（印章/红头）", "blue": "蓝色内容", "green": "绿色内容", "orange/yellow": "橙黄色内容", "purple": "紫色内容"}
MODES = {"colour": "彩色", "grey": "灰度", "bilevel": "黑白"}


def stop(kind: str | None, resume_at: int | None) -> tuple[str, str]:
    state, todo = STOPS.get(kind or "", STOP_DEFAULT)
    return state, todo.format(page=resume_at or "下一")


def central(state: str) -> str:
    return CENTRAL.get(state, state)


def flags(record: dict) -> list[tuple[str, str]]:
    """A page's flags as (css class, words): blank?, colour kept and why, skew found, crop, orientation."""
    out = []
    if record.get("blank"):
        out.append(("warn", f"疑似空白页（着墨 {record.get('blank_score', 0):.2f}%），请确认"))
    mode = record.get("colour")
    evidence = record.get("colour_evidence") or {}
    if mode == "colour":
        found = evidence.get("found_percent") or {}
        if found:
            why = "、".join(f"{COLOUR_FOUND.get(k, k + ' 色内容')} {v:.2f}%" for k, v in found.items())
        elif evidence.get("policy") == "colour":
            why = "按配置一律彩色"
        else:
            why = "彩色"
        out.append(("colour", f"保留彩色：{why}"))
    elif mode:
        out.append(("", MODES.get(mode, mode)))
    skew = record.get("skew_deg")
    if record.get("skew_flag"):
        out.append(("warn", "未纠偏：倾斜无法确定，请检查"))
    elif skew is not None:
        out.append(("", f"纠偏 {abs(skew):.1f}°" if abs(skew) >= 0.05 else "无倾斜"))
    out.append(("", "已裁边" if record.get("crop") else "未裁边"))
    if record.get("orientation"):
        out.append(("", f"已转正 {record['orientation']}°"))
    if record.get("orientation_flag"):
        out.append(("warn", "方向无法确定，请检查"))
    return out
