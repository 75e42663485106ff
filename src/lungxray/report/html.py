"""Self-contained HTML report: inline CSS, images embedded as base64 data URIs, no JS.

The page has no external references, so it can be mailed or archived as a single file and still
render identically. All text is HTML-escaped, because class names, headings and notes may come
from folder names or configs that we do not control.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text

__all__ = ["metrics_tables", "write_report"]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml"}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: .3em .7em; text-align: left; }
th { background: #eee; }
tr:nth-child(even) td { background: #f8f8f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #666; }
"""


def _fmt(value: Any) -> tuple[str, bool]:
    """Format a table cell; return (escaped text, is_numeric)."""
    if value is None:
        return "&mdash;", False
    if isinstance(value, bool):
        return html.escape(str(value)), False
    # numbers.* also catches numpy scalars, which metrics dicts may hold before a JSON round-trip.
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}", True
    if isinstance(value, numbers.Real):
        v = float(value)
        return ("&mdash;" if math.isnan(v) else f"{v:.4f}"), True
    if isinstance(value, (list, tuple)):
        parts = [_fmt(v)[0] for v in value]
        return "[" + ", ".join(parts) + "]", False
    return html.escape(str(value)), False


def _table_html(table: Mapping[str, Any]) -> str:
    """Render {"columns": [...], "rows": [[...], ...]} as an HTML table."""
    columns = list(table.get("columns", []))
    out = ["<table>"]
    if columns:
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
                   + "</tr></thead>")
    out.append("<tbody>")
    for row in table.get("rows", []):
        cells = []
        for v in row:
            text, numeric = _fmt(v)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _image_html(path: str | Path) -> str:
    """Embed an image file as a data URI inside a captioned <figure>."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"report image not found: {p}")
    mime = _MIME.get(p.suffix.lower(), "image/png")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    name = html.escape(p.name)
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{name}">'
            f"<figcaption>{name}</figcaption></figure>")


def _text_html(text: str) -> str:
    """Escape text; blank lines separate paragraphs, single newlines become line breaks."""
    paras = [p.strip() for p in str(text).split("\n\n") if p.strip()]
    return "\n".join("<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paras)


def write_report(
    out_html: str | Path, *, title: str, sections: Sequence[Mapping[str, Any]]
) -> Path:
    """Write a single self-contained HTML page.

    Args:
        out_html: Output path; its folder is created if needed.
        title: Page title and top heading.
        sections: Dicts {"heading": str, "text": optional str, "table": optional
            {"columns": [...], "rows": [[...], ...]}, "images": optional list of image paths,
            "links": optional list of (label, href) pairs, href relative to the page}.

    Returns:
        The output path.
    """
    body = [f"<h1>{html.escape(str(title))}</h1>"]
    for i, sec in enumerate(sections):
        if "heading" not in sec:
            raise ValueError(f"section {i} has no 'heading'")
        body.append(f"<section>\n<h2>{html.escape(str(sec['heading']))}</h2>")
        if sec.get("text"):
            body.append(_text_html(sec["text"]))
        if sec.get("table"):
            body.append(_table_html(sec["table"]))
        for img in sec.get("images") or []:
            body.append(_image_html(img))
        links = sec.get("links") or []
        if links:
            items = "".join(f'<li><a href="{html.escape(str(href), quote=True)}">{html.escape(str(label))}</a></li>'
                            for label, href in links)
            body.append(f"<ul>{items}</ul>")
        body.append("</section>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(str(title))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )

    return atomic_write_text(out_html, page)


def metrics_tables(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn a `classification_metrics` dict into report sections.

    Args:
        metrics: Output of `lungxray.metrics.classification_metrics` (or its JSON round-trip).

    Returns:
        Sections: a summary table (accuracy + CI, macro metrics, calibration), a per-class table
        and the confusion matrix as counts.
    """
    macro = metrics.get("macro", {})
    summary_rows = [
        ["Samples (N)", metrics.get("n")],
        ["Accuracy", metrics.get("accuracy")],
        ["Accuracy 95% CI", metrics.get("accuracy_ci")],
        ["Macro precision", macro.get("precision")],
        ["Macro recall (sensitivity)", macro.get("recall")],
        ["Macro specificity", macro.get("specificity")],
        ["Macro F1", macro.get("f1")],
        ["Macro AUC (one-vs-rest)", macro.get("auc")],
        ["Macro AUC 95% CI", macro.get("auc_ci")],
        ["Expected calibration error (ECE)", metrics.get("ece")],
        ["Negative log-likelihood", metrics.get("nll")],
        ["Brier score", metrics.get("brier")],
    ]
    per_rows = [
        [name, m.get("support"), m.get("precision"), m.get("recall"), m.get("specificity"),
         m.get("f1"), m.get("auc"), m.get("auc_ci")]
        for name, m in metrics.get("per_class", {}).items()
    ]
    sections: list[dict[str, Any]] = [
        {
            "heading": "Summary",
            "text": ("95% confidence intervals are percentile bootstrap intervals over the images scored."
                     if metrics.get("accuracy_ci") else "No confidence intervals (no bootstrap resamples)."),
            "table": {"columns": ["Metric", "Value"], "rows": summary_rows},
        },
        {
            "heading": "Per-class metrics",
            "table": {
                "columns": ["Class", "Support", "Precision", "Recall (sensitivity)", "Specificity",
                            "F1", "AUC", "AUC 95% CI"],
                "rows": per_rows,
            },
        },
    ]
    cm = metrics.get("confusion_matrix")
    classes = list(metrics.get("classes", []))
    if cm is not None and len(cm) == len(classes):
        sections.append({
            "heading": "Confusion matrix (counts)",
            "text": "Rows are true classes, columns predicted classes.",
            "table": {"columns": ["True \\ Predicted", *classes],
                      "rows": [[name, *row] for name, row in zip(classes, cm)]},
        })
    return sections
