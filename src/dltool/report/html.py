"""The page every report shares: escaping, tables, the stylesheet and the small script.

Everything read from a run folder is data: it goes into the page through :func:`text`
(HTML-escaped) or :func:`script_json` (JSON that cannot close its ``<script>``), never as
markup. The page loads nothing: its CSS and JavaScript are inline, images are ``data:``
URIs, so it opens from ``file://`` with no network.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any


def text(value: Any) -> str:
    """``value`` as HTML text: ``<script>`` in a run name is shown, never run."""
    return html.escape(str(value), quote=True)


def number(value: Any) -> str:
    """A metric as people read it: 4 decimals, 3 significant digits below 0.01."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return text("-" if value is None else value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return text(str(value))
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.4f}"


def finite(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def script_json(data: Any) -> str:
    """JSON for a ``<script type="application/json">``: ``<``, ``>`` and ``&`` escaped, so
    text such as ``</script>`` in a run name cannot end the script element."""
    encoded = json.dumps(finite(data), separators=(",", ":"), allow_nan=False)
    return encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    sortable: bool = False,
    numeric: Sequence[bool] | None = None,
    row_classes: Sequence[str] | None = None,
    table_class: str = "",
) -> str:
    """An HTML table; every cell is escaped, numbers formatted by :func:`number`.

    A cell that is a :class:`Markup` is put in as it is (built here from escaped parts).
    ``sortable`` lets a click on a header sort the rows (numbers as numbers).
    """
    classes = " ".join(c for c in (table_class, "sortable" if sortable else "") if c)
    head = "".join(
        f"<th{' class=num' if numeric and numeric[i] else ''}>{text(name)}</th>"
        for i, name in enumerate(header)
    )
    body = []
    for index, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            sort_key = ""
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                sort_key = f' data-sort="{text(cell)}"'
            align = " class=num" if numeric and numeric[i] else ""
            shown = str(cell) if isinstance(cell, Markup) else number(cell)
            cells.append(f"<td{align}{sort_key}>{shown}</td>")
        row_class = f' class="{text(row_classes[index])}"' if row_classes and row_classes[index] else ""  # fmt: skip
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    class_attribute = f' class="{classes}"' if classes else ""
    return f"<table{class_attribute}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"  # fmt: skip


class Markup(str):
    """HTML built in this package from escaped parts: :func:`table` puts it in unescaped."""


def section(anchor: str, title: str, body: str, hint: str = "") -> str:
    """One titled part of a report; ``hint`` is the sentence on what to look for."""
    said = f'<p class="hint">{text(hint)}</p>' if hint else ""
    return f'<section id="{text(anchor)}"><h2>{text(title)}</h2>{said}{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]], data: dict[str, Any]) -> str:  # fmt: skip
    """A whole report: ``sections`` are (anchor, title, html) in order; ``data`` feeds the script."""
    links = "".join(f'<a href="#{text(anchor)}">{text(name)}</a>' for anchor, name, _ in sections)
    parts = "".join(body for _, _, body in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No request may leave the page: a policy that allows only what is inline.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{text(title)}</h1><p class=sub>{text(subtitle)}</p>"
        f"<nav>{links}</nav></header><main>{parts}</main>"
        '<div id="tooltip" class="tooltip" hidden></div>'
        f'<script type="application/json" id="report-data">{script_json(data)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


STYLE = """
:root{--ink:#1d2330;--dim:#5f6b7a;--line:#d9dee5;--bg:#f6f7f9;--train:#2563eb;--val:#ea580c}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:16px 24px 8px;position:sticky;top:0;z-index:2}
h1{margin:0;font-size:20px;word-break:break-all}
.sub{margin:2px 0 8px;color:var(--dim)}
nav a{margin-right:14px;color:var(--train);text-decoration:none;font-size:13px}
main{padding:8px 24px 40px;max-width:1320px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 18px;margin:16px 0}
h2{font-size:16px;margin:4px 0 6px}
h3{font-size:14px;margin:10px 0 4px}
.hint{color:var(--dim);margin:0 0 10px;font-size:13px}
.note{color:var(--dim);font-style:italic}
table{border-collapse:collapse;margin:4px 0 8px;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#aab}
table.sortable th.asc:after{content:" \\2191";color:var(--ink)}
table.sortable th.desc:after{content:" \\2193";color:var(--ink)}
tr.best td{background:#ecfdf3;font-weight:600}
tr.default td{color:var(--dim)}
.tag{display:inline-block;font-size:11px;border-radius:4px;padding:0 5px;background:#eef1f5;color:var(--dim);margin-left:6px}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:8px}
.tile{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:130px}
.tile b{display:block;font-size:22px}
.tile span{color:var(--dim);font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0}
figcaption{font-size:12px;color:var(--dim);max-width:420px;padding-left:56px}
.key{margin-right:12px;white-space:nowrap}
svg.chart{background:#fff;overflow:visible}
svg text{font:11px system-ui,sans-serif;fill:var(--dim)}
svg .title{font-size:13px;font-weight:600;fill:var(--ink)}
.grid line{stroke:#eceff3}
.axis line,.axis path{stroke:#9aa4b2}
.guide{stroke:#111;stroke-dasharray:2 3;visibility:hidden}
.matrix td{text-align:center;min-width:38px}
.mistakes{display:flex;flex-wrap:wrap;gap:12px}
.mistake{border:1px solid var(--line);border-radius:6px;padding:6px;font-size:12px;width:132px}
.mistake img{width:120px;height:120px;image-rendering:pixelated;display:block;background:#000}
.scroll{overflow-x:auto}
.scroll td,table.values td{max-width:420px;overflow-wrap:anywhere}
.thumbs{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:4px 0}
.thumbs span{font-size:12px;color:var(--dim);min-width:90px}
img.filter{width:40px;height:40px;image-rendering:pixelated;border:1px solid var(--line)}
img.map{width:64px;height:64px;image-rendering:pixelated;border:1px solid var(--line)}
h4{font-size:12px;margin:6px 0 2px;color:var(--dim)}
pre{background:#f3f4f6;padding:8px;overflow:auto;font-size:12px}
.tooltip{position:fixed;pointer-events:none;background:#111827;color:#fff;padding:5px 8px;border-radius:5px;font-size:12px;white-space:pre;z-index:5}
"""

# Hover on a chart: the nearest x's values in a tooltip (textContent: never markup); a click
# on a sortable table's header sorts its rows. Charts are drawn as SVG by Python; this only
# reads report-data.
SCRIPT = r"""
(function(){
"use strict";
var data=JSON.parse(document.getElementById("report-data").textContent);
var tip=document.getElementById("tooltip");
function fmt(v){if(v===null||v===undefined)return "-";var a=Math.abs(v);
 return (a!==0&&a<0.01)?v.toPrecision(3):v.toFixed(4);}
document.querySelectorAll("svg.chart[data-chart]").forEach(function(svg){
 var chart=data.charts[svg.getAttribute("data-chart")];if(!chart)return;
 var guide=svg.querySelector(".guide");
 svg.addEventListener("mousemove",function(ev){
  var pt=svg.createSVGPoint();pt.x=ev.clientX;pt.y=ev.clientY;
  var p=pt.matrixTransform(svg.getScreenCTM().inverse());
  var best=-1,dist=Infinity;
  for(var i=0;i<chart.px.length;i++){var d=Math.abs(chart.px[i]-p.x);if(d<dist){dist=d;best=i;}}
  if(best<0)return;
  var lines=[(chart.xlabel?chart.xlabel+" ":"")+chart.x[best]];
  chart.series.forEach(function(s){if(s.values[best]!==null&&s.values[best]!==undefined)
   lines.push(s.name+": "+fmt(s.values[best]));});
  tip.textContent=lines.join("\n");tip.hidden=false;
  tip.style.left=(ev.clientX+14)+"px";tip.style.top=(ev.clientY+10)+"px";
  if(guide){guide.setAttribute("x1",chart.px[best]);guide.setAttribute("x2",chart.px[best]);
   guide.style.visibility="visible";}
 });
 svg.addEventListener("mouseleave",function(){tip.hidden=true;
  if(guide)guide.style.visibility="hidden";});
});
document.querySelectorAll("table.sortable").forEach(function(table){
 var heads=table.querySelectorAll("th");
 heads.forEach(function(th,col){th.addEventListener("click",function(){
  var up=!th.classList.contains("asc");
  heads.forEach(function(h){h.classList.remove("asc","desc");});
  th.classList.add(up?"asc":"desc");
  var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
  function key(r){var c=r.cells[col];if(!c)return null;var s=c.getAttribute("data-sort");
   if(s!==null){var v=parseFloat(s);return isNaN(v)?null:v;}
   var t=c.textContent;return (t===""||t==="-")?null:t;}
  rows.sort(function(a,b){var x=key(a),y=key(b);
   if(x===null||y===null)return (x===null)-(y===null);  /* no value: last, either way */
   var n=(typeof x==="number"&&typeof y==="number")?(x-y):
    String(x).localeCompare(String(y),undefined,{numeric:true});return up?n:-n;});
  rows.forEach(function(r){body.appendChild(r);});
 });});
});
})();
"""
