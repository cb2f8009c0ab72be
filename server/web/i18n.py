"""Every string of the web UI in Chinese and English, in one table; Chinese first.

The language comes from `?lang=zh|en` (which also sets the cookie) or the `yangyi_lang` cookie;
anything else is Chinese. A key missing from the table shows as the key itself, so a gap is
visible on the page and caught by the test that every key has both languages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"


DEFAULT_LANG = Lang.ZH
LANG_COOKIE = "yangyi_lang"
LANG_QUERY = "lang"

TEXT: Mapping[str, tuple[str, str]] = {
    # chrome
    "app.name": ("养怡", "Yangyi"),
    "app.tagline": ("老年助餐点 · 安全与补贴", "Meal points for elders · safety and subsidies"),
    "nav.overview": ("总览", "Overview"),
    "nav.alerts": ("告警", "Alerts"),
    "nav.subsidy": ("补贴", "Subsidy"),
    "nav.registry": ("登记", "Registry"),
    "nav.logout": ("退出", "Sign out"),
    "nav.lang_other": ("English", "中文"),
    "nav.signed_in_as": ("当前用户", "Signed in as"),
    "updated_at": ("更新于", "Updated"),
    "none": ("无", "None"),
    "back": ("返回", "Back"),
    "missing_api": ("此功能的接口尚未上线。", "The API behind this page has not landed yet."),
    # roles
    "role.bureau_admin": ("民政局管理员", "Bureau administrator"),
    "role.bureau_viewer": ("民政局查看员", "Bureau viewer"),
    "role.township_officer": ("乡镇专干", "Township officer"),
    "role.village_officer": ("村（社区）专干", "Village officer"),
    "role.caregiver": ("护理员", "Caregiver"),
    # login
    "login.title": ("登录", "Sign in"),
    "login.username": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.failed": ("用户名或密码错误", "Wrong user name or password"),
    "login.throttled": ("尝试次数过多，请稍后再试", "Too many attempts; try again later"),
    "login.error": ("登录失败，请重试", "Sign-in failed; try again"),
    # overview
    "overview.title": ("全县总览", "County overview"),
    "overview.scope_title": ("辖区总览", "Overview of your area"),
    "overview.points": ("助餐点", "Meal points"),
    "overview.online": ("在线", "Online"),
    "overview.offline": ("离线", "Offline"),
    "overview.never_seen": ("从未上线", "Never seen"),
    "overview.diners_today": ("今日就餐", "Meals today"),
    "overview.last_week": ("上周同期", "Same time last week"),
    "overview.expected": ("预计全天", "Expected (day)"),
    "overview.expected_help": ("预计全天 = 前四周同一星期几的全天就餐人次平均",
                               "Expected = mean of the full day on the same weekday of the previous four weeks"),
    "overview.active_alerts": ("未解除告警", "Active alerts"),
    "overview.device_problems": ("设备异常", "Devices with problems"),
    "overview.township": ("乡镇", "Township"),
    "overview.village": ("村（社区）", "Village"),
    "overview.point": ("助餐点", "Meal point"),
    "overview.devices": ("设备", "Devices"),
    "overview.alerts": ("告警", "Alerts"),
    "overview.unplaced": ("未归属乡镇的助餐点", "Points not placed in a township"),
    "overview.no_points": ("辖区内暂无助餐点。", "No meal points in your area yet."),
    "overview.device": ("设备", "Device"),
    "overview.state": ("状态", "State"),
    "overview.last_seen": ("最后在线", "Last seen"),
    "overview.problem.offline": ("离线", "offline"),
    "overview.problem.silent": ("心跳超时", "silent"),
    "overview.problem.backlog": ("缓存积压", "outbox backlog"),
    "overview.more_problems": ("另有 {n} 台设备异常", "{n} more devices with problems"),
    "overview.freshness": ("就餐数字最多延迟 {s} 秒", "Meal figures are at most {s} s old"),
    # severities and states
    "severity.critical": ("紧急", "Critical"),
    "severity.alarm": ("报警", "Alarm"),
    "severity.warning": ("预警", "Warning"),
    "severity.info": ("提示", "Info"),
    "severity.fault": ("故障", "Fault"),
    "state.open": ("未确认", "Open"),
    "state.acknowledged": ("已确认", "Acknowledged"),
    "state.resolved": ("已解除", "Resolved"),
    "level.normal": ("正常", "Normal"),
    "level.warn": ("预警", "Warning"),
    "level.fault": ("故障", "Fault"),
    "level.comm_lost": ("通信中断", "Comm lost"),
    "level.alarm": ("一级报警", "Alarm"),
    "level.alarm2": ("二级报警", "Alarm level 2"),
    # meal point
    "point.title": ("助餐点", "Meal point"),
    "point.checkins": ("今日签到", "Check-ins today"),
    "point.meal": ("餐次", "Meal"),
    "point.accepted": ("就餐人次", "Meals served"),
    "point.events": ("刷卡次数", "Taps"),
    "point.deliveries": ("送餐", "Deliveries"),
    "point.no_checkins": ("今日暂无签到。", "No check-ins today yet."),
    "point.camera_vs_card": ("摄像头计数与刷卡对比（按小时）", "Camera count against card taps (by hour)"),
    "point.camera": ("摄像头进门人数", "Camera entries"),
    "point.cards": ("刷卡就餐", "Card meals"),
    "point.sensors": ("传感器实时曲线（24 小时）", "Sensor charts (24 h)"),
    "point.no_sensors": ("近 24 小时无传感器数据。", "No sensor data in the last 24 hours."),
    "point.safety": ("安全状态", "Safety state"),
    "point.devices": ("设备健康", "Device health"),
    "point.software": ("软件版本", "Software"),
    "point.outbox": ("待发缓存", "Outbox"),
    "point.alert_history": ("告警记录", "Alert history"),
    "point.no_alerts": ("暂无告警。", "No alerts."),
    "point.threshold": ("阈值", "Threshold"),
    "point.registry": ("老人登记与安全台账", "Elders and safety ledger"),
    "meal.breakfast": ("早餐", "Breakfast"),
    "meal.lunch": ("午餐", "Lunch"),
    "meal.dinner": ("晚餐", "Dinner"),
    "meal.unassigned": ("未分餐次", "No meal"),
    # alerts
    "alerts.title": ("告警", "Alerts"),
    "alerts.opened_at": ("发生时间", "Opened"),
    "alerts.severity": ("级别", "Severity"),
    "alerts.state": ("状态", "State"),
    "alerts.condition": ("类型", "Condition"),
    "alerts.value": ("读数", "Value"),
    "alerts.message": ("说明", "Message"),
    "alerts.count": ("次数", "Count"),
    "alerts.point": ("助餐点", "Meal point"),
    "alerts.hazard": ("类别", "Hazard"),
    "alerts.any": ("全部", "Any"),
    "alerts.active_only": ("未解除", "Active"),
    "alerts.min_severity": ("最低级别", "At least"),
    "alerts.filter": ("筛选", "Filter"),
    "alerts.none": ("没有符合条件的告警。", "No alerts match."),
    "alerts.ack": ("确认", "Acknowledge"),
    "alerts.resolve": ("解除", "Resolve"),
    "alerts.note": ("整改说明", "Rectification note"),
    "alerts.on_site": ("已到现场确认", "Confirmed on site"),
    "alerts.timeline": ("处置记录", "Timeline"),
    "alerts.ack_by": ("确认人", "Acknowledged by"),
    "alerts.live": ("实时更新中", "Live"),
    "alerts.offline": ("实时连接中断，正在重连", "Live updates lost; reconnecting"),
    "alerts.failed": ("操作失败", "Action failed"),
    "alerts.needs_site": ("燃气、用电报警须到现场确认并填写整改说明",
                          "Gas and electric alarms need an on-site confirmation and a note"),
    "registry.title": ("登记与台账", "Registry and ledger"),
    "registry.elders": ("老人登记", "Elders"),
    "registry.name": ("姓名", "Name"),
    "registry.id_number": ("身份证号", "ID number"),
    "registry.age": ("年龄", "Age"),
    "registry.phone": ("电话", "Phone"),
    "registry.categories": ("人群类别", "Categories"),
    "registry.cards": ("卡片", "Cards"),
    "registry.status": ("状态", "Status"),
    "registry.no_elders": ("本助餐点尚无登记老人。", "No elders registered at this point."),
    "registry.import": ("Excel 批量导入（县民政局）", "Excel import (county bureau)"),
    "registry.import_hint": ("表格含“老人”“人群类别”“助餐卡”三张表；先试导入查看逐行检查结果，无误后再正式导入。",
                             "The workbook has the sheets 老人, 人群类别 and 助餐卡; check it first (dry run), "
                             "then import."),
    "registry.import_dry": ("试导入（只检查，不写入）", "Dry run (check only, write nothing)"),
    "registry.import_go": ("上传并检查", "Upload and check"),
    "registry.import_export": ("导出当前登记表", "Export the registry"),
    "registry.import_sheet": ("表", "Sheet"),
    "registry.import_row": ("行", "Row"),
    "registry.import_column": ("列", "Column"),
    "registry.import_problem": ("问题", "Problem"),
    "ledger.title": ("本月安全台账", "This month's safety ledger"),
    "ledger.new": ("记录一次检查", "Record an inspection"),
    "ledger.kind": ("检查类型", "Kind"),
    "ledger.kind.daily": ("每日检查", "Daily check"),
    "ledger.kind.weekly": ("每周检查", "Weekly check"),
    "ledger.kind.monthly": ("每月巡查", "Monthly patrol"),
    "ledger.item.electricity": ("电气线路、插座无破损过热", "Wiring and sockets sound, not hot"),
    "ledger.item.gas": ("燃气软管、阀门无泄漏老化", "Gas hoses and valves sound, no leak"),
    "ledger.item.food": ("食材新鲜、储存规范", "Food fresh and properly stored"),
    "ledger.item.samples": ("按规定留样 48 小时", "Meal samples kept 48 h"),
    "ledger.item.fire": ("灭火器在位有效、通道畅通", "Extinguisher in place, exits clear"),
    "ledger.samples": ("留样（每日检查）", "Meal samples kept (daily check)"),
    "ledger.dishes": ("菜品", "Dishes"),
    "ledger.passed": ("合格", "Passed"),
    "ledger.failed": ("不合格", "Failed"),
    "ledger.note": ("备注", "Note"),
    "ledger.problem": ("发现问题及整改", "Problem found and rectification"),
    "ledger.save": ("保存检查记录", "Save the inspection"),
    "ledger.saved": ("已保存", "Saved"),
    "ledger.none": ("本月尚无检查记录。", "No inspections this month."),
    "ledger.inspector": ("检查人", "Inspector"),
    "ledger.when": ("检查时间", "Inspected"),
    "ledger.result": ("结果", "Result"),
    "subsidy.title": ("助餐补贴结算", "Meal subsidy settlement"),
    "subsidy.month": ("月份", "Month"),
    "subsidy.export_xlsx": ("导出 Excel", "Export XLSX"),
    "subsidy.export_csv": ("导出 CSV", "Export CSV"),
    "subsidy.state": ("本月状态", "State of the month"),
    "subsidy.state.open": ("未签字", "Open"),
    "subsidy.state.signed": ("已签字", "Signed"),
    "subsidy.state.reopened": ("已重新打开", "Reopened"),
    "subsidy.revision": ("版本", "Revision"),
    "subsidy.run": ("结算批次", "Run"),
    "subsidy.computed_at": ("计算时间", "Computed"),
    "subsidy.meals": ("补贴餐数", "Meals"),
    "subsidy.amount": ("补贴金额（元）", "Amount (yuan)"),
    "subsidy.adjustments": ("调整", "Adjustments"),
    "subsidy.due": ("应付", "Due"),
    "subsidy.taps": ("刷卡", "Taps"),
    "subsidy.excluded": ("剔除", "Excluded"),
    "subsidy.anomalies": ("待核查异常", "Anomalies to review"),
    "subsidy.anomaly": ("异常类型", "Kind"),
    "subsidy.no_anomalies": ("没有异常标记。", "No anomaly flags."),
    "subsidy.more_anomalies": ("另有 {n} 条，见导出的 Excel", "{n} more in the exported workbook"),
    "subsidy.day": ("日期", "Day"),
    "subsidy.totals": ("汇总", "Totals"),
    "subsidy.unit": ("单位", "Unit"),
    "subsidy.level.county": ("全县", "County"),
    "subsidy.level.township": ("乡镇", "Township"),
    "subsidy.level.village": ("村", "Village"),
    "subsidy.level.point": ("助餐点", "Point"),
    "subsidy.not_settled": ("本月尚未结算。", "This month has not been settled."),
    "subsidy.no_taps_in_scope": ("本月结算中没有您辖区的刷卡记录。", "The settlement has no taps in your area."),
    "inapp.close": ("知道了", "Dismiss"),
    "inapp.open": ("查看", "Open"),
    "subsidy.settle": ("结算本月", "Settle the month"),
    "subsidy.sign": ("签字确认", "Sign off"),
    "subsidy.draft_notices": ("起草各村公示", "Draft the villages' notices"),
    "subsidy.notices": ("村级公示", "Village notices"),
    "subsidy.notice_status": ("公示状态", "Notice status"),
    "subsidy.due_on": ("公示期限", "Due"),
    "subsidy.preview_print": ("预览 / 打印", "Preview / print"),
    "subsidy.reopen": ("重新打开本月", "Reopen the month"),
    "subsidy.reopen_reason": ("重新打开的原因（必填，至少 5 个字）",
                              "Reason for reopening (required, 5 characters or more)"),
    "subsidy.corrections": ("差额转入下月调整", "Carry differences into the next month"),
    "subsidy.corrections_done": ("已转入 {into}：{lines} 条，合计 {delta} 元",
                                 "Carried into {into}: {lines} lines, {delta} yuan in all"),
    "subsidy.publish": ("标记已张贴", "Mark as posted"),
    "subsidy.published_on": ("张贴日期", "Posted on"),
    "subsidy.notice.not_drafted": ("未起草", "Not drafted"),
    "subsidy.notice.pending": ("待张贴", "To be posted"),
    "subsidy.notice.overdue": ("逾期未张贴", "Overdue"),
    "subsidy.notice.published": ("已按期张贴", "Posted on time"),
    "subsidy.notice.published_late": ("逾期后张贴", "Posted late"),
    "hazard.gas": ("燃气", "Gas"),
    "hazard.electric": ("用电", "Electric"),
    "hazard.device": ("设备", "Device"),
    "hazard.diners": ("就餐", "Diners"),
    "hazard.other": ("其他", "Other"),
    "event.opened": ("发生", "Opened"),
    "event.severity_changed": ("级别变化", "Severity changed"),
    "event.acknowledged": ("已确认", "Acknowledged"),
    "event.cleared": ("已恢复", "Cleared"),
    "event.recurred": ("再次发生", "Recurred"),
    "event.confirmed": ("现场确认", "Confirmed on site"),
    "event.resolved": ("已解除", "Resolved"),
    "event.corroborated": ("平台规则印证", "Corroborated by the server's rule"),
}


def text(key: str, lang: Lang) -> str:
    """The string for `key` in `lang`; the key itself when the table lacks it."""
    pair = TEXT.get(key)
    if pair is None:
        return key
    return pair[0] if lang is Lang.ZH else pair[1]


def translator(lang: Lang) -> Callable[..., str]:
    """A `t(key, **fmt)` function for templates."""

    def t(key: str, **fmt: object) -> str:
        s = text(key, lang)
        return s.format(**fmt) if fmt else s

    return t


def pick_lang(query: str | None, cookie: str | None) -> Lang:
    """The query's language, else the cookie's, else Chinese."""
    for candidate in (query, cookie):
        if candidate in (Lang.ZH.value, Lang.EN.value):
            return Lang(candidate)
    return DEFAULT_LANG
