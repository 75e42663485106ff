"""The layer table of a model (name, type, output shape, parameters) and its PNG, for run reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox

from .plots import _save

if TYPE_CHECKING:
    import torch


def _shape_of(output: Any) -> list[int] | list[Any] | None:
    """Shape of a tensor output as a list, a list of shapes for tuple outputs, else None."""
    shape = getattr(output, "shape", None)
    if shape is not None:
        return [int(s) for s in shape]
    if isinstance(output, (tuple, list)):
        return [_shape_of(o) for o in output]
    return None


def layer_table(model: torch.nn.Module, input_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Per-layer output shapes and parameter counts from one forward pass on zeros.

    Hooks go on leaf modules and on any container that owns parameters directly (e.g. a class
    token), so the parameter column sums to the model total for every module that runs. A module
    called several times gets one row per call, with its parameters counted on the first only.

    Args:
        model: The network; its train/eval mode is restored afterwards.
        input_shape: Full input shape including the batch dimension, e.g. (1, 1, 224, 224).

    Returns:
        Rows {name, type, output_shape, params} in execution order.
    """
    import torch

    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    handles = []

    def make_hook(name: str) -> Any:
        def hook(module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            first = id(module) not in seen
            seen.add(id(module))
            params = sum(p.numel() for p in module.parameters(recurse=False)) if first else 0
            rows.append({"name": name or type(module).__name__, "type": type(module).__name__,
                         "output_shape": _shape_of(output), "params": int(params)})
        return hook

    for name, module in model.named_modules():
        is_leaf = next(module.children(), None) is None
        owns_params = next(module.parameters(recurse=False), None) is not None
        if is_leaf or owns_params:
            handles.append(module.register_forward_hook(make_hook(name)))

    first_param = next(model.parameters(), None)
    device = first_param.device if first_param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(int(s) for s in input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return rows


def plot_layer_table(rows: Sequence[Mapping[str, Any]], out_png: str | Path, title: str) -> Path:
    """Render a `layer_table` as a table image with a total-parameters row.

    Args:
        rows: Output of `layer_table`.
        out_png: Output PNG path.
        title: Figure title (e.g. the model name).

    Returns:
        The output path.
    """
    def fmt_shape(s: Any) -> str:
        if s is None:
            return "-"
        if s and isinstance(s[0], list):
            return ", ".join(fmt_shape(x) for x in s)
        return "(" + ", ".join(str(v) for v in s) + ")"

    total = sum(int(r.get("params", 0)) for r in rows)
    cells = [[str(i + 1), str(r.get("name", "")), str(r.get("type", "")),
              fmt_shape(r.get("output_shape")), f"{int(r.get('params', 0)):,}"]
             for i, r in enumerate(rows)]
    cells.append(["", "Total", "", "", f"{total:,}"])
    columns = ["#", "Layer", "Type", "Output shape", "Parameters"]

    # Height grows with the row count so text never overlaps, whatever the model depth; the
    # table fills the whole axes (bbox) so no blank band is left under it.
    fig, ax = plt.subplots(figsize=(10, 0.25 * (len(cells) + 1)))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=columns, bbox=Bbox.from_bounds(0.0, 0.0, 1.0, 1.0),
                     cellLoc="left", colLoc="left", colWidths=[0.05, 0.33, 0.17, 0.28, 0.17])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, _col), cell in table.get_celld().items():
        if r == 0 or r == len(cells):
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.9")
    ax.set_title(f"{title}  ({total:,} parameters)", fontsize=11, pad=8)
    return _save(fig, out_png)


# --------------------------------------------------------------------------------------------
# Multi-model comparison
# --------------------------------------------------------------------------------------------
