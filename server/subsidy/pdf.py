"""The village notice as a printable A4 PDF (reportlab), same content as the HTML.

Chinese text uses reportlab's built-in CID font STSong-Light (Adobe-GB1): PDF readers supply the
glyphs, so no font file ships with the server and the PDF stays small. The same last check as the
HTML applies: no unmasked ID or phone number may appear in the text drawn.
"""

from __future__ import annotations

import io
import re
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from server.subsidy.errors import NoticeError
from server.subsidy.notice import DonationKind, VillageNotice

FONT = "STSong-Light"
_UNMASKED_ID = re.compile(r"\d{17}[\dXx]|\d{15}")
_UNMASKED_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _zh(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def render_pdf(notice: VillageNotice) -> bytes:
    """Render the notice; raise NoticeError if an unmasked ID or phone number would be printed."""
    font = _font()
    title = ParagraphStyle("title", fontName=font, fontSize=18, leading=24, alignment=1)
    sub = ParagraphStyle("sub", fontName=font, fontSize=10.5, leading=14, alignment=1, textColor=colors.grey)
    head = ParagraphStyle("head", fontName=font, fontSize=13, leading=18, spaceBefore=8, spaceAfter=4)
    body = ParagraphStyle("body", fontName=font, fontSize=10.5, leading=15)
    n = notice
    texts: list[str] = []

    def para(text: str, style: ParagraphStyle) -> Paragraph:
        texts.append(text)
        return Paragraph(escape(text), style)

    def table(rows: list[list[str]], widths: list[float]) -> Table:
        for row in rows:
            texts.extend(row)
        t = Table(rows, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([
            ("FONTNAME", (0, 0), (-1, -1), font),
            ("FONTSIZE", (0, 0), (-1, -1), 10),
            ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.92, 0.92, 0.92)),
            ("ALIGN", (0, 0), (-1, -1), "CENTER"),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]))
        return t

    story = [
        para(f"{n.village_name}居家养老服务公示", title),
        para(f"{n.county}{n.township_name} · {n.month.year}年{n.month.month}月", sub),
        Spacer(1, 4 * mm),
        para("一、服务汇总", head),
        table([["助餐（补贴餐次）", "就餐老人（人）", "补贴金额（元）", "助洁（次）", "助医（次）"],
               [str(n.meals), str(n.diners), _money(n.subsidy), str(n.cleaning), str(n.medical)]],
              [34 * mm] * 5),
        para("二、服务明细（个人信息已脱敏）", head),
    ]
    rows = [["序号", "姓名", "身份证号", "助餐（次）", "补贴（元）", "助洁（次）", "助医（次）"]]
    for i, r in enumerate(n.rows, 1):
        rows.append([str(i), r.name, r.id_number, str(r.meals), _money(r.subsidy), str(r.cleaning), str(r.medical)])
    if len(rows) == 1:
        rows.append(["—", "本月无服务记录", "", "", "", "", ""])
    story.append(table(rows, [12 * mm, 22 * mm, 44 * mm, 22 * mm, 24 * mm, 22 * mm, 22 * mm]))
    story.append(para("三、爱心捐赠光荣榜", head))
    drows = [["日期", "捐赠者", "类别", "捐赠内容"]]
    for d in n.donations:
        drows.append([_zh(d.day), d.donor, "现金" if d.kind is DonationKind.MONEY else "物资", d.what])
    if len(drows) == 1:
        drows.append(["—", "本月无捐赠", "", ""])
    story.append(table(drows, [32 * mm, 48 * mm, 20 * mm, 70 * mm]))
    story.append(Spacer(1, 6 * mm))
    story.append(para(f"公示期内如有异议，请向村（社区）或乡镇民政办反映。公示截止：{_zh(n.due_on)}前张贴。", body))
    story.append(para(f"起草日期：{_zh(n.drafted_on)}", body))
    joined = "\n".join(texts)
    if _UNMASKED_ID.search(joined) or _UNMASKED_PHONE.search(joined):
        raise NoticeError(f"notice for {n.village_id} would print an unmasked ID or phone number")
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, title=f"{n.village_name} {n.month} 公示", author=n.county or "")
    doc.build(story)
    return buf.getvalue()
