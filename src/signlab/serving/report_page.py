"""The report as a page: titled tables of formatted cells, rendered as clean Markdown and as
one self-contained HTML page (a small embedded style sheet, plotly.js inlined once)."""

from __future__ import annotations

import html as h
import re
from dataclasses import dataclass

import plotly.graph_objects as go


@dataclass
class Table:
    """A titled table of formatted cells; `right` names the numeric (right-aligned) columns."""

    title: str
    heads: list[str]
    rows: list[list[str]]
    right: set[str]
    caption: str = ""
    muted: tuple[str, ...] = ("runs",)  # shown small and grey
    lists: tuple[str, ...] = ("runs", "what mattered (fANOVA)", "source")  # comma-separated items, kept whole

    def column(self, head: str) -> list[str]:
        i = self.heads.index(head)
        return [row[i] for row in self.rows]


def markdown(table: Table) -> str:
    """A Markdown table, numeric columns right-aligned."""
    if not table.rows:
        return "(no rows)\n"
    out = ["| " + " | ".join(table.heads) + " |",
           "|" + "|".join("---:" if head in table.right else "---" for head in table.heads) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table.rows]
    return "\n".join(out) + "\n"


def markdown_page(lead: str, intro: str, tables: list[Table], notes: list[str]) -> str:
    """The page in Markdown: headline, intro, each table with its caption, notes."""
    parts = ["# signlab report", f"**Headline.** {lead}", intro]
    for table in tables:
        parts += [f"## {table.title}", markdown(table).rstrip("\n")] + ([f"_{table.caption}_"] if table.rows else [])
    if notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in notes)]
    parts.append("Charts (accuracy per model with the spread over seeds, accuracy against parameters, per-letter "
                 "F1 and the confusion matrix of our best model) are in report.html.")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` as HTML, the rest escaped."""
    out = h.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _html_table(table: Table) -> str:
    """A table whose numeric columns align on the decimal point, std set apart."""
    split = {head for head in table.right if any(" ± " in cell for cell in table.column(head))}

    def cell(head: str, value: str) -> str:
        if head in table.lists:
            value = ", ".join(f"<span class='item'>{_inline(item)}</span>" for item in value.split(", ") if item)
        else:
            value = _inline(value)
        if head not in table.right:
            return f"<td{' class=muted' if head in table.muted else ''}>{value}</td>"
        if head in split:
            mean, _, sd = value.partition(" ± ")
            return f"<td class='num'>{h.escape(mean)} <span class='sd'>{'± ' + sd if sd else ''}</span></td>"
        return f"<td class='num'>{value}</td>"

    if not table.rows:
        return f"<h2>{h.escape(table.title)}</h2><p class='caption'>(no rows)</p>"
    heads = "".join(f"<th{' class=num' if head in table.right else ''}>{h.escape(head)}</th>" for head in table.heads)
    body = "".join("<tr>" + "".join(cell(head, value) for head, value in zip(table.heads, row, strict=True))
                   + "</tr>" for row in table.rows)
    return (f"<h2>{h.escape(table.title)}</h2><div class='scroll'><table><thead><tr>{heads}</tr></thead>"
            f"<tbody>{body}</tbody></table></div><p class='caption'>{_inline(table.caption)}</p>")


FONT = 'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif'
CSS = f"body{{margin:0;background:#fff;color:#1f2328;font:15px/1.5 {FONT}}}" + """
main{max-width:1320px;margin:0 auto;padding:28px 32px 56px}
h1{font-size:28px;margin:0 0 14px}
h2{font-size:20px;margin:36px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
.headline{font-size:18px;line-height:1.45;margin:0 0 12px;padding:14px 18px;background:#eef5ff;
border-left:5px solid #1f6feb;border-radius:4px}
.intro,.caption,.notes{color:#59636e;font-size:13px}
.caption{margin:6px 0 0;max-width:110ch}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f3f4f6;padding:1px 4px;
border-radius:3px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #d8dee4;padding:5px 8px;vertical-align:top}
th{background:#f3f5f7;text-align:left;font-weight:600;vertical-align:bottom;line-height:1.25}
td:first-child{min-width:15em}
td.muted{color:#59636e;font-size:12px}
.item{white-space:nowrap}
tbody tr:nth-child(even){background:#f8f9fb}
tbody tr:hover{background:#eef5ff}
.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
th.num{min-width:4.5em}
.sd{display:inline-block;min-width:3.3em;text-align:left;color:#59636e}
.chart{margin:18px 0}
"""


def html_page(lead: str, intro: str, tables: list[Table], notes: list[str], figures: list[go.Figure]) -> str:
    """The same page in HTML, with the charts; plotly.js inlined once, before the first chart."""
    charts = "".join("<div class='chart'>" + fig.update_layout(font_family=FONT).to_html(
        full_html=False, include_plotlyjs=(i == 0)) + "</div>" for i, fig in enumerate(figures))
    notes_html = ("<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{_inline(n)}</li>" for n in notes) + "</ul>"
                  if notes else "")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>signlab report</title>"
            f"<style>{CSS}</style></head><body><main><h1>signlab report</h1>"
            f"<p class='headline'>{_inline(lead)}</p><p class='intro'>{_inline(intro)}</p>"
            + "".join(_html_table(t) for t in tables) + notes_html
            + f"<h2>Charts</h2>{charts}</main></body></html>")
