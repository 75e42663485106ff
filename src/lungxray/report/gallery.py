"""`index.html` for a prediction folder: every overlay in a grid, with its prediction and OOD flag."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from ..utils import atomic_write_text

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .3rem}
.notice{background:#fde8e8;border:1px solid #e0a0a0;padding:.5rem .8rem;border-radius:6px;margin:.6rem 0 1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1rem}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.5rem}
.card img{width:100%;height:auto;display:block}
.cap{font-size:.85rem;margin-top:.35rem;word-break:break-all}
.ood{color:#a00;font-weight:600}
.meta{font-size:.85rem;color:#555}
"""


def write_gallery(out_dir: str | Path, rows: list[dict], model: dict, classes: list[str], title: str = "lungxray predictions") -> Path:
    """Write `out_dir/index.html` linking the overlay PNGs (relative paths, so the folder can be moved)."""
    out_dir = Path(out_dir)
    cards = []
    for r in rows:
        probs = ", ".join(f"{html.escape(c)} {100 * r['probabilities'][c]:.1f}%" for c in classes)
        ood = r.get("ood") or {}
        flag = f'<div class="ood">possibly not a chest X-ray: {html.escape("; ".join(ood.get("reasons", [])))}</div>' if ood.get("flagged") else ""
        # A file name is not a URL: "case #3.png" or "a?b.png" must be percent-encoded to load.
        src = html.escape(quote(Path(r["overlay"]).as_posix())) if r.get("overlay") else ""
        img = f'<img src="{src}" alt="{html.escape(r["name"])}">' if src else ""
        cards.append(
            f'<div class="card">{img}<div class="cap"><b>{html.escape(r["prediction"])}</b> '
            f'{100 * r["probability"]:.1f}% &middot; {html.escape(r["name"])}<br>'
            f'<span class="meta">{probs}</span>{flag}</div></div>'
        )
    name = html.escape(f"{model.get('name', '?')} {model.get('version') or ''}".strip())
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<div class="meta">model {name} &middot; {len(rows)} image(s) &middot; predictions.csv and predictions.json beside this page</div>'
        '<div class="notice"><b>Research use only — not a medical device.</b> Not for diagnosis or clinical decisions; '
        "see docs/MODEL_CARD.md for the data, the evaluation and the known limits.</div>"
        f'<div class="grid">{"".join(cards)}</div></body></html>\n'
    )
    return atomic_write_text(out_dir / "index.html", page)
