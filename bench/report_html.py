"""The HTML page of one bench/compare.sh run: one bar chart per metric with
every server side by side and Ferry's ratio to each peer marked on the
peer's bar, then the Markdown report itself. One self-contained file:
inline SVG and style, no script, nothing fetched. Python stdlib only.

Used by report.py (--html FILE); the metrics, titles and medians are
report.py's own.
"""

import html

BAR_H = 22
GAP = 6
LABEL_W = 170
PLOT_W = 460
RIGHT_W = 330
FERRY_COLOURS = {"ferry-ws": "#1f77b4", "ferry-wss": "#17becf", "ferry-quic": "#9467bd"}
PEER_COLOUR = "#8c8c8c"
FAILED_COLOUR = "#d62728"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin: 1.6em 0 0.3em; }
figure { margin: 0 0 18px; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 12px; overflow-x: auto; font-size: 0.85em; }
.legend span { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin-right: 4px; }
"""


def esc(s):
    return html.escape(str(s), quote=True)


def fmt(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"


def ratio_text(ferry_values, peer_value, titles):
    """'Ferry WS ÷ this = 1.25×' parts for every Ferry server measured."""
    parts = []
    for f, fv in ferry_values:
        if fv is not None and peer_value:
            parts.append((f, fv / peer_value, f"{titles[f]} ÷ this = {fv / peer_value:.2f}×"))
    return parts


def bar_chart(metric, rows, ferry_values, titles):
    """One metric: rows are (server, value, failed) with a value."""
    mid, what, _label, _get, decimals, lower_better = metric
    top = max(v for _, v, _ in rows) or 1
    height = len(rows) * (BAR_H + GAP) + GAP
    width = LABEL_W + PLOT_W + RIGHT_W
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(what)}">']
    for i, (server, value, failed) in enumerate(rows):
        y = GAP + i * (BAR_H + GAP)
        w = max(1.0, PLOT_W * value / top)
        ferry = server in FERRY_COLOURS
        colour = FAILED_COLOUR if failed else FERRY_COLOURS.get(server, PEER_COLOUR)
        out.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H * 0.7:.1f}" text-anchor="end" '
                   f'font-size="13" font-weight="{"bold" if ferry else "normal"}">{esc(titles[server])}</text>')
        out.append(f'<rect class="bar" data-server="{esc(server)}" data-value="{value!r}" '
                   f'x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}"/>')
        shown = fmt(value, decimals) + (" (checks FAILED)" if failed else "")
        out.append(f'<text class="value" x="{LABEL_W + w + 5:.1f}" y="{y + BAR_H * 0.7:.1f}" '
                   f'font-size="12">{esc(shown)}</text>')
        if not ferry:
            parts = ratio_text(ferry_values, value, titles)
            if parts:
                text = " · ".join(p[2].replace(" ÷ this", "") for p in parts)
                ratios = ";".join(f"{f}={r!r}" for f, r, _ in parts)
                out.append(f'<text class="ratio" data-ratios="{esc(ratios)}" x="{LABEL_W + PLOT_W + 8}" '
                           f'y="{y + BAR_H * 0.7:.1f}" font-size="12" fill="#444">'
                           f'{esc(text)}</text>')
    out.append("</svg>")
    better = "lower is better" if lower_better else "higher is better"
    return (f'<figure class="metric" data-metric="{esc(mid)}">'
            f'<h2>{esc(what)}</h2>{"".join(out)}'
            f'<figcaption>{better}; on each peer\'s bar, Ferry ÷ that peer (same run).</figcaption>'
            f'</figure>')


def page(runs, peers, metrics, titles, value, failed_count, title, markdown):
    """The whole page. value(runs, peer, metric) is the median or None;
    failed_count(runs, peer, metric) the repeats whose checks failed."""
    ferry = [p for p in peers if p in FERRY_COLOURS]
    charts = []
    for m in metrics:
        rows = []
        for p in peers:
            v = value(runs, p, m)
            if v is not None:
                rows.append((p, v, failed_count(runs, p, m) > 0))
        if not rows:
            continue
        ferry_values = [(f, value(runs, f, m)) for f in ferry]
        charts.append(bar_chart(m, rows, ferry_values, titles))
    legend = "".join(
        f'<span><span class="swatch" style="background:{FERRY_COLOURS[f]}"></span>{esc(titles[f])}</span>'
        for f in ferry)
    legend += f'<span><span class="swatch" style="background:{PEER_COLOUR}"></span>peers</span>'
    legend += f'<span><span class="swatch" style="background:{FAILED_COLOUR}"></span>checks failed</span>'
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f'<p class="legend">{legend}</p>'
        + "".join(charts)
        + f'<h2>The report</h2><pre id="markdown">{esc(markdown)}</pre>'
        "</body></html>\n"
    )
