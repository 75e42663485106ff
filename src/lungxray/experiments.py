"""Run the original study's five-model ladder on one shared split and compare them honestly."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

from . import runs
from .config import load_config, tomllib
from .data.api import split_dataset
from .data.split import read_manifest
from .errors import ConfigError
from .evaluate import evaluate_run, load_predictions
from .report.html import write_report
from .report.plots import plot_comparison
from .train import train
from .utils import atomic_write_text, read_json, write_json

log = logging.getLogger(__name__)
SEED_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "seed"


def _reference(path: Path) -> tuple[str, float | None]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    return doc.get("description", ""), doc.get("reference", {}).get("accuracy")


_RUNTIME_KEYS = ("threads", "device")
"""Settings that do not change what a run learns; a finished run is reused whatever they were."""


def _check_reusable(run: Path, cfg, manifest: Path) -> None:
    """Refuse to report (or resume) a run that was trained with other settings or on another split than asked now."""
    # A setting added since the run was made is absent from its config.json: the run had the default (as resume reads it).
    ran, want = {**type(cfg)().to_dict(), **read_json(run / "config.json")}, cfg.to_dict()
    changed = sorted(k for k in set(ran) | set(want) if k not in _RUNTIME_KEYS and ran.get(k) != want.get(k))
    if changed:
        raise ConfigError(f"{run}: trained with other settings than asked now ({', '.join(changed[:5])}); give "
                          "another out= for the new settings, or remove that run folder to retrain it")

    def key(path: Path) -> set[tuple[str, str, str]]:
        return {(r.path, r.label, r.split) for r in read_manifest(path)}

    if key(run / "split.csv") != key(manifest):
        raise ConfigError(f"{run}: trained on another split than {manifest}; the comparison needs one shared split: "
                          "give another out=, or remove that run folder to retrain it")


_EXPERIMENT_FILES = ("experiment.json", "split.csv", "comparison.json", "comparison.md", "comparison.csv",
                     "comparison.png", "report.html")
_MARKER = "experiment.json"
"""Written first into an experiment's folder (its configs): the folder can be continued even if it stopped before
its first run folder or comparison existed."""


def _check_out(out: Path, stems: list[str]) -> None:
    """An experiment writes into a new folder or continues an earlier experiment's; anything else is refused before
    a file is written (its report.html and split.csv would replace the user's)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; out= must be a folder (new, or an earlier experiment's)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    entries = sorted(out.iterdir())
    foreign = [p.name + ("/" if p.is_dir() else "") for p in entries
               if not fnmatch(p.name, ".*.tmp") and not (p.is_file() and p.name in _EXPERIMENT_FILES)
               and not (p.is_dir() and (p.name in stems or runs.is_run_folder(p)))]
    # Only an earlier experiment's own folder is continued: its comparison, or one of its runs, says it is one (a
    # user's lone report.html or split.csv would otherwise be replaced).
    earlier = any((out / name).is_file() for name in (_MARKER, "comparison.json")) \
        or any(p.is_dir() and runs.is_run_folder(p) for p in entries)
    if foreign or not earlier:
        what = f" ({runs.listing(foreign)})" if foreign else ""
        raise ConfigError(f"{out} holds files an experiment does not write{what}, or is not an earlier experiment's "
                          "folder; an experiment writes into a new folder or continues an earlier one: choose another out=")


def run_experiments(
    data: str | Path,
    out: str | Path = "runs/experiments",
    configs: list[str | Path] | None = None,
    split_csv: str | Path | None = None,
    overrides: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> list[dict]:
    """Train and evaluate every config on one split; write comparison.{md,csv,png} and report.html.

    Finished runs (with `eval-test/metrics.json`) are reused and unfinished ones resumed, so an
    interrupted experiment continues where it stopped; a finished run trained with other settings or on another
    split is refused (ConfigError), never reported as this one.
    """
    out = Path(out)
    paths = [Path(c) for c in configs] if configs else sorted(SEED_CONFIGS.glob("*.toml"))
    if not paths:
        raise ConfigError(f"no configs found (looked in {SEED_CONFIGS}); pass configs=")
    stems = [p.stem for p in paths]
    twins = sorted({n for n in stems if stems.count(n) > 1})
    if twins:
        raise ConfigError(f"two configs are named {twins[0]}.toml: each config's run is the folder of its file name "
                          "(out/NAME), so one would be reported as the other; rename one")
    _check_out(out, stems)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / _MARKER).is_file():
        write_json(out / _MARKER, {"configs": [str(p) for p in paths], "seed": seed})
    # A cap on images per class shapes the shared split itself (every config trains and tests on the same images);
    # the configs then train on that manifest as it is.
    overrides = dict(overrides or {})
    per_class = overrides.pop("per_class", None)
    manifest = out / "split.csv"
    if split_csv is not None:
        if per_class is not None:
            raise ConfigError(f"per_class={per_class} caps a split made here, but split_csv= ({split_csv}) already fixes "
                              "the images: make a capped one with `lungxray data split --per-class N`")
        manifest = Path(split_csv)
    elif not manifest.exists():
        split_dataset(data, manifest, seed=seed, per_class=per_class, cache_dir=cache_dir, progress=progress)
    elif per_class is not None:
        counts = Counter(r.label for r in read_manifest(manifest))
        if max(counts.values()) > per_class:
            raise ConfigError(f"per_class={per_class}: {manifest}, the split of an earlier experiment in this folder, "
                              f"has up to {max(counts.values())} images per class; give another out= for a capped "
                              "experiment")
    rows = []
    for path in paths:
        name = path.stem
        run = out / name
        cfg = load_config(path, overrides)
        metrics_path = run / "eval-test" / "metrics.json"
        if (run / "config.json").is_file() and (run / "split.csv").is_file():  # finished or to be resumed
            _check_reusable(run, cfg, manifest)
        if not metrics_path.is_file():
            if not (run / "summary.json").is_file():
                resume = (run / runs.STATE).is_file()
                log.warning("training %s%s", name, " (resuming)" if resume else "")
                train(cfg, data, run, manifest, resume=resume, progress=progress, cache_dir=cache_dir)
            # metrics.json is written last, so without it any eval-test/ is an interrupted evaluation: redo it.
            evaluate_run(run, data, "test", manifest, out=metrics_path.parent, progress=progress, cache_dir=cache_dir,
                         overwrite=True)
        m = read_json(metrics_path)
        summary = read_json(run / "summary.json")
        ran = read_json(run / "config.json")  # what the run really used (it may predate these overrides)
        desc, ref = _reference(path)
        rows.append({
            "name": name,
            "description": desc,
            "model": ran["model"],
            "image_size": ran["image_size"],
            "epochs_run": summary["epochs_run"],
            "accuracy": m["accuracy"],
            "accuracy_ci": m["accuracy_ci"],
            "macro_f1": m["macro"]["f1"],
            "macro_auc": m["macro"]["auc"],
            "covid_sensitivity": m["per_class"].get("COVID", {}).get("recall"),
            "ece": m["ece"],
            "train_seconds": summary["train_seconds"],
            "parameters": summary["parameters"],
            "reported_accuracy": ref,
            "n_test": m["n"],
        })
    write_json(out / "comparison.json", rows)
    _write_tables(out, rows)
    results = []
    for r in rows:
        y, probs, classes = load_predictions(out / r["name"] / "eval-test" / "predictions.csv")
        results.append({"name": r["name"], "y_true": y, "probs": probs, "classes": classes,
                         "accuracy": r["accuracy"], "accuracy_ci": r["accuracy_ci"]})
    ref = {r["name"]: r["reported_accuracy"] for r in rows if r["reported_accuracy"] is not None}
    plot_comparison(results, out / "comparison.png", reference=ref)
    table_rows = [[c for c in _md_cells(r)] for r in rows]
    write_report(out / "report.html", title="lungxray: the original study's five models, reproduced on a leakage-free split", sections=[
        {"heading": "Comparison (test split)", "table": {"columns": list(_MD_COLUMNS), "rows": table_rows},
         "text": "Accuracy with 95% bootstrap CI; 'reported' is the original study's figure, obtained with leakage."},
        {"heading": "ROC and accuracy", "images": [out / "comparison.png"]},
        *({"heading": r["name"], "images": [p for p in (out / r["name"] / "eval-test" / f for f in
                                                        ("curves.png", "confusion.png", "roc.png")) if p.is_file()]}
          for r in rows),
    ])
    return rows


_MD_COLUMNS = ("run", "input", "accuracy [95% CI]", "reported", "macro F1", "macro AUC", "COVID sensitivity", "ECE",
               "epochs", "train time", "parameters")


def _md_cells(r: dict) -> list[str]:
    lo, hi = r["accuracy_ci"]
    rep = f"{r['reported_accuracy']:.0%}" if r["reported_accuracy"] is not None else "-"
    auc = f"{r['macro_auc']:.3f}" if r["macro_auc"] is not None else "-"
    sens = f"{r['covid_sensitivity']:.3f}" if r["covid_sensitivity"] is not None else "-"
    return [r["name"], f"{r['model']} {r['image_size']}px", f"{r['accuracy']:.1%} [{lo:.1%}, {hi:.1%}]", rep, f"{r['macro_f1']:.3f}", auc, sens,
            f"{r['ece']:.3f}", str(r["epochs_run"]), f"{r['train_seconds'] / 60:.1f} min", f"{r['parameters']:,}"]


def _write_tables(out: Path, rows: list[dict]) -> None:
    md = ["| " + " | ".join(_MD_COLUMNS) + " |", "|" + "---|" * len(_MD_COLUMNS)]
    md += ["| " + " | ".join(_md_cells(r)) + " |" for r in rows]
    atomic_write_text(out / "comparison.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    cols = ["name", "model", "image_size", "epochs_run", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_f1",
            "macro_auc", "covid_sensitivity", "ece", "train_seconds", "parameters", "reported_accuracy", "n_test"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        flat = {**r, "accuracy_ci_low": r["accuracy_ci"][0], "accuracy_ci_high": r["accuracy_ci"][1]}
        w.writerow([flat[c] for c in cols])
    atomic_write_text(out / "comparison.csv", buf.getvalue())
