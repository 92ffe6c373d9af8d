"""Server-side SVG charts for the admin insights, drawn by pygal.

The CSP allows no scripts and no inline styles, so each chart is inlined as bare SVG: pygal's
``<script>`` and ``<style>`` are left out (``js=[]``; the style element removed), and its
stylesheet, scoped under ``.pygal-chart``, is served from our own origin
(:func:`stylesheet`, ``/admin/insights/charts.css``). Text in the SVG is escaped by pygal's
XML writer.
"""

from __future__ import annotations

import html
import re
import sys
from functools import lru_cache

import pygal
from markupsafe import Markup
from pygal.style import Style

# pygal appends a legacy import hook for its map plugins (unused here) that has no find_spec,
# so Python warns on every failed import that reaches it: take it out again.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

COLORS = ("#b42318", "#0f7b3f", "#1a56db", "#9a5b00", "#6941c6", "#0e7490", "#c11574",
          "#475467", "#027a48", "#b54708")
STYLE = Style(
    background="transparent", plot_background="#ffffff", foreground="#1d2330",
    foreground_strong="#1d2330", foreground_subtle="#596275", opacity=".85",
    opacity_hover=".95", colors=COLORS, font_family="system-ui, sans-serif",
    label_font_size=13, major_label_font_size=13, legend_font_size=14, title_font_size=14,
    value_font_size=12,
)
_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.S)
_SCRIPT_ELEMENT = re.compile(r"<script[^>]*>.*?</script>|<script[^>]*/>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="[^"]*"')


def _config(**options) -> dict:
    return {"style": STYLE, "js": [], "disable_xml_declaration": True, "no_prefix": True,
            "width": 760, "height": 340, "legend_at_bottom": True, "legend_at_bottom_columns": 4,
            "print_values": False, "show_y_guides": True, "margin": 12, "margin_bottom": 32,
            "truncate_label": 28,
            "truncate_legend": 28, "no_data_text": "", **options}


def svg(chart, label: str) -> Markup:
    """The chart as inline SVG with no script and no style, labelled for screen readers."""
    raw = chart.render(is_unicode=True)
    raw = _COMMENT.sub("", _SCRIPT_ELEMENT.sub("", _STYLE_ELEMENT.sub("", raw)))
    raw = _STYLE_ATTRIBUTE.sub("", raw)
    raw = raw.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)
    return Markup(raw)  # noqa: S704  (pygal's XML writer escaped every text)


def line(x_labels: list[str], series: dict[str, list[int]], label: str) -> Markup:
    every = max(1, len(x_labels) // 6)
    chart = pygal.Line(**_config(x_label_rotation=0, show_minor_x_labels=False,
                                 x_labels_major_every=every, dots_size=2,
                                 show_dots=len(x_labels) <= 31, min_scale=2, max_scale=8))
    chart.x_labels = x_labels
    for name, values in series.items():
        chart.add(name, values)
    return svg(chart, label)


def bars(x_labels: list[str], series: dict[str, list[int]], label: str, *,
         stacked: bool = False) -> Markup:
    if stacked:
        chart = pygal.StackedBar(**_config(min_scale=2, max_scale=8))
    else:
        # pygal draws the first bar at the bottom: reversed, the chart reads like its table.
        x_labels = x_labels[::-1]
        series = {name: values[::-1] for name, values in series.items()}
        height = 110 + 24 * len(x_labels) * max(1, len(series))
        chart = pygal.HorizontalBar(**_config(height=max(200, min(height, 760)), min_scale=2,
                                              max_scale=8))
    chart.x_labels = x_labels
    for name, values in series.items():
        chart.add(name, values)
    return svg(chart, label)


def _scoped(css: str) -> str:
    """pygal's rules (prefix-less) under ``.pygal-chart``."""
    rules = []
    for block in css.split("}"):
        if "{" not in block:
            continue
        selectors, body = block.split("{", 1)
        scoped = []
        for selector in selectors.split(","):
            selector = selector.strip()
            scoped.append(".pygal-chart" if not selector else f".pygal-chart {selector}")
        rules.append(f"{', '.join(scoped)} {{{body}}}")
    return "\n".join(rules)


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """pygal's stylesheet for :data:`STYLE` (every series colour), scoped to our charts."""
    chart = pygal.Bar(**_config())
    for index in range(len(COLORS)):
        chart.add(str(index), [index])
    raw = chart.render(is_unicode=True)
    css = "\n".join(html.unescape(m) for m in re.findall(r"<style[^>]*>(.*?)</style>", raw, re.S))
    extra = (".pygal-chart { inline-size: 100%; block-size: auto; max-inline-size: 760px; }\n"
             ".pygal-chart .tooltip { display: none; }\n"
             ".pygal-chart .axis .guide.line, .pygal-chart .axis .major.guide.line "
             "{ stroke: #d5dae3; }\n")
    return _scoped(css) + "\n" + extra
