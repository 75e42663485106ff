"""Report generation: PNG figures (`plots`) and a self-contained HTML page (`html`)."""

from __future__ import annotations

from .html import metrics_tables, write_report
from .layers import layer_table, plot_layer_table
from .plots import (
    macro_roc_curve,
    plot_comparison,
    plot_confusion,
    plot_history,
    plot_reliability,
    plot_roc,
)

__all__ = [
    "layer_table",
    "macro_roc_curve",
    "metrics_tables",
    "plot_comparison",
    "plot_confusion",
    "plot_history",
    "plot_layer_table",
    "plot_reliability",
    "plot_roc",
    "write_report",
]
