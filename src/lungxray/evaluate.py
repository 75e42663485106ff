"""Evaluate a trained run on a split: metrics with bootstrap CIs, calibration, plots and an HTML report."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint
from .data.api import load_split
from .errors import ConfigError, DatasetError
from .inference import check_masks, predict_logits
from .preprocess import LungView, read_size
from .metrics import classification_metrics, softmax
from .report.html import metrics_tables, write_report
from .report.plots import plot_confusion, plot_history, plot_reliability, plot_roc
from .seen import describe_overlap
from .utils import atomic_write_text, next_free_folder, read_json, refuse_taken_folder, write_json

log = logging.getLogger(__name__)


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def evaluate_run(
    run: str | Path,
    data: str | Path,
    split: str = "test",
    split_csv: str | Path | None = None,
    out: str | Path | None = None,
    which: str = "best",
    n_bootstrap: int = 1000,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    masks: str | None = None,
) -> dict:
    """Score a run's checkpoint on one split of its manifest and write metrics.json, plots and report.html.

    Args:
        run: run folder made by `lungxray train`, or a `.safetensors` checkpoint (then `split_csv` and `out`
            are required), e.g. the shipped model.
        data: dataset folder the run was trained on.
        split: "test" (default), "val" or "train".
        split_csv: manifest to use instead of the run's own split.csv.
        out: output folder (default `<run>/eval-<split>`, or `-2`, `-3`, ... when that one is taken; the returned
            dict's "out" says which).
        masks: for a lung-masked model, evaluate with "provided" or "predicted" masks instead of the
            kind it was trained with (e.g. to measure what predicted masks cost where both exist).
        overwrite: replace an existing, non-empty output folder's files (refused by default, before any work).
    Returns:
        The metrics dict (also written to metrics.json).
    """
    run = Path(run)
    is_file = run.suffix == ".safetensors" and run.is_file()  # e.g. the shipped weights, with their .json
    if not (run.is_dir() or is_file):
        raise ConfigError(f"{run}: run folder (or .safetensors checkpoint) not found")
    if is_file and (split_csv is None or out is None):
        raise ConfigError(f"{run}: a checkpoint file has no run folder; give split_csv= (the split) and out=")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split={split}: must be train, val or test")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap={n_bootstrap!r}: must be a whole number >= 0 (0: no confidence intervals)")
    # Without --out each evaluation gets its own folder (eval-test, eval-test-2, ...); an explicit one is never replaced
    # without overwrite.
    out = Path(out) if out else next_free_folder(run / f"eval-{split}")
    refuse_taken_folder(out, overwrite, "evaluate writes metrics.json, plots and a report")
    model, meta = load_checkpoint(run, which)
    manifest = Path(split_csv) if split_csv else run / "split.csv"
    trained_masks = meta.get("masks", "none")
    masks = masks or trained_masks
    if (masks == "none") != (trained_masks == "none"):
        raise ConfigError(f"masks={masks}: the model was trained on {'unmasked images' if trained_masks == 'none' else trained_masks + ' masks'}; "
                          "only the kind of mask (provided or predicted) can be changed at evaluation")
    if masks == "predicted":
        from .models.pretrained import check_segmenter

        check_segmenter(meta.get("segmenter"), meta["model"])
    read = read_size(meta)
    data_split = load_split(data, manifest, meta["classes"], read, cache_dir=cache_dir, progress=progress, masks=masks)
    idx = data_split.indices(split)
    if len(idx) == 0:
        raise DatasetError(f"{manifest}: no readable images in the {split!r} split")
    overlap = _seen_overlap(run, which, data_split, idx)
    if overlap["images"]:
        log.warning("%s", describe_overlap(overlap, split))
    elif not overlap["checked"] and split_csv and (run / "split.csv").is_file() \
            and manifest.resolve() != (run / "split.csv").resolve():
        # A run from before seen.json: its own split, by path, is all there is to check against.
        _warn_if_trained_on(run / "split.csv", [data_split.rows[i].path for i in idx], manifest, split)
    check_masks(data_split, idx, masks)
    logits = predict_logits(model, data_split, idx, masks, batch_size, view=LungView.from_meta(meta), progress=progress,
                            desc=f"scoring {split}")
    temperature = float(meta.get("temperature", 1.0))
    probs = softmax(logits, temperature)
    y = data_split.labels()[idx]
    classes = list(meta["classes"])
    metrics = classification_metrics(y, probs, classes, n_bootstrap=n_bootstrap, seed=0)
    empty = [c for c in classes if metrics["per_class"][c]["support"] == 0]
    if empty:
        # Macro precision/recall/F1 count such a class as 0 (scikit-learn's convention) while the macro AUC leaves it
        # out: either way the macro figures are not those of a split that holds every class.
        log.warning("the %s split has no images of %s: its precision, recall and F1 are counted as 0 in the macro "
                    "averages, and its AUC is left out of the macro AUC; read accuracy and the per-class figures",
                    split, ", ".join(empty))
    metrics["classes_without_images"] = empty
    metrics.update(
        {
            "run": run.name,
            "model": meta["model"],
            "checkpoint": which,
            "epoch": meta.get("epoch"),
            "split": split,
            "masks": masks,
            "temperature": temperature,
            "data_fingerprint": data_split.fingerprint,
            "trained_on_fingerprint": meta.get("data", {}).get("fingerprint"),
            "seen_by_model": overlap,
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", "curves.png"):  # overwrite: the completeness marker goes first, and a plot this
        (out / stale).unlink(missing_ok=True)    # run may not redraw must not outlive it
    _write_predictions(out / "predictions.csv", [data_split.rows[i].path for i in idx], y, probs, classes)
    images = []
    history = _read_history(run / "history.csv")
    if history:
        images.append(plot_history(history, out / "curves.png"))
    images.append(plot_confusion(np.array(metrics["confusion_matrix"]), classes, out / "confusion.png"))
    roc_png, _ = plot_roc(y, probs, classes, out / "roc.png")
    images.append(roc_png)
    images.append(plot_reliability(y, probs, out / "reliability.png"))
    sections = [
        {
            "heading": "Run",
            "table": {
                "columns": ["field", "value"],
                "rows": [
                    ["model", meta["model"]],
                    ["checkpoint", f"{which} (epoch {meta.get('epoch')})"],
                    ["evaluated split", f"{split} ({len(idx)} images)"],
                    ["masks", masks],
                    ["image size", "x".join(map(str, meta["image_size"]))
                     + ("" if read == tuple(meta["image_size"]) else
                        f" (the lungs cropped from a {'x'.join(map(str, read))} read)")],
                    ["data fingerprint", data_split.fingerprint],
                    ["temperature", temperature],
                ],
            },
        },
        *([{"heading": "Not held out", "text": describe_overlap(overlap, split)}] if overlap["images"] else []),
        *([{"heading": "Classes without images", "text": f"The {split} split has no images of {', '.join(empty)}: "
            "their precision, recall and F1 count as 0 in the macro averages, and their AUC is left out of the "
            "macro AUC. Read accuracy and the per-class figures."}] if empty else []),
        *metrics_tables(metrics),
        {"heading": "Curves, confusion matrix, ROC and calibration", "images": images},
    ]
    sections += architecture_section(run, out)
    write_report(out / "report.html", title=f"lungxray evaluation: {run.name} on {split}", sections=sections)
    write_json(out / "metrics.json", metrics)  # last: its presence means the evaluation is complete
    return {**metrics, "out": str(out)}


def _seen_overlap(run: Path, which: str, data_split, idx) -> dict:
    """The scored images that the checkpoint trained or was validated on, by file content (`seen.py`); a checkpoint
    without a seen-image list (trained before lungxray wrote one) gives an empty overlap and says nothing."""
    from .checkpoint import resolve_checkpoint
    from .seen import read_seen, seen_overlap, seen_path

    seen = read_seen(seen_path(resolve_checkpoint(run, which)[0]))
    if not seen:
        return {"images": 0, "of": int(len(idx)), "by_split": {}, "examples": [], "checked": False}
    overlap = seen_overlap(seen, [data_split.prepared.digests[i] for i in idx], [data_split.rows[i].path for i in idx])
    return {**overlap, "checked": True}


def _warn_if_trained_on(own: Path, paths: list[str], manifest: Path, split: str) -> None:
    """Warn when images scored from another manifest were in the run's own training or validation split, by
    dataset-relative path: for runs without a seen-image list (`seen.py`), which also finds renamed copies."""
    from .data.split import read_manifest

    seen = {r.path: r.split for r in read_manifest(own) if r.split in ("train", "val")}
    overlap = [p for p in paths if p in seen]
    if overlap:
        log.warning("%d of the %d %s images of %s were in this run's own %s split (e.g. %s): these scores are not "
                    "held-out figures", len(overlap), len(paths), split, manifest.name,
                    "/".join(sorted({seen[p] for p in overlap})), overlap[0])


def architecture_section(run: Path, out: Path) -> list[dict]:
    """A line on the network and links to the run's layer table (a long table ends no report)."""
    import os

    links = [(f"layer table ({name})", Path(os.path.relpath(run / name, out)).as_posix())
             for name in ("layers.png", "layers.json") if (run / name).is_file()]
    if not links:
        return []
    text = ""
    if (run / "summary.json").is_file():
        summary = read_json(run / "summary.json")
        text = f"{summary.get('model')}: {int(summary.get('parameters', 0)):,} parameters."
    return [{"heading": "Architecture", "text": text, "links": links}]


def _write_predictions(path: Path, paths: list[str], y: np.ndarray, probs: np.ndarray, classes: list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "prediction", "probability", *classes])
    for p, t, pr in zip(paths, y, probs):
        k = int(np.argmax(pr))
        w.writerow([p, classes[int(t)], classes[k], f"{pr[k]:.6f}", *(f"{v:.6f}" for v in pr)])
    atomic_write_text(path, buf.getvalue())


def load_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read an evaluation's predictions.csv back as (y_true, probs, classes)."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        classes = header[4:]
        y, probs = [], []
        for row in reader:
            y.append(classes.index(row[1]))
            probs.append([float(v) for v in row[4:]])
    return np.array(y), np.array(probs), classes
