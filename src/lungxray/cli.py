"""Command line: parse, call one library function, print. Errors the user can fix print without a traceback."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import click

from . import __version__
from .cli_errors import _Group

DEFAULT_DATA = "../shared/data/covid19-radiography"


# Options several commands share, declared once.
data_option = click.option("--data", default=DEFAULT_DATA, show_default=True, type=click.Path(),
                           help="Dataset folder (or a parent).")
checkpoint_option = click.option("--checkpoint", "which", default="best", show_default=True,
                                 type=click.Choice(["best", "last"]), help="Which weights of the run.")
device_option = click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "auto"]))
runtime_option = click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
                              help="Who computes the probabilities; onnx exports the model once (cached) and runs "
                                   "ONNX Runtime.")


onnx_file_option = click.option("--onnx", "onnx_path", type=click.Path(), default=None,
                                help="With --runtime onnx: this export of --model (`lungxray export`; default: "
                                     "exported once and cached).")


def _check_onnx_file(onnx_path, runtime: str) -> None:
    """--onnx FILE says which export --runtime onnx runs; with the torch runtime it would be ignored."""
    if onnx_path and runtime != "onnx":
        raise click.UsageError("--onnx FILE is used with --runtime onnx")


def _shipped_if_default(run):
    """RUN as given, or the shipped classifier's weights for `default`."""
    if run != "default":
        return run
    from .predict.results import DEFAULT_MODEL

    return DEFAULT_MODEL


def overwrite_option(what: str):
    """--overwrite, with what it replaces in this command."""
    return click.option("--overwrite", is_flag=True, help=f"Replace {what}.")


def _size(value: int | None) -> tuple[int, int]:
    return (int(value), int(value))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lungxray")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """lungxray: COVID-19 / Normal / Viral Pneumonia chest X-ray classification."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s: %(message)s")


@main.group()
def data() -> None:
    """Inspect a dataset and make leakage-free splits."""


_classes_opt = click.option(
    "--classes", default=None, help="Comma-separated classes (default: COVID,Normal,Viral Pneumonia; Lung_Opacity may be added)."
)


def _parse_classes(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _print_inspection(rep: dict) -> None:
    click.echo(f"dataset: {rep['root']}")
    click.echo(f"classes: {', '.join(rep['classes'])}   images: {rep['total_images']}")
    header = f"{'class':<16} {'folder':<16} {'images':>6} {'readable':>8} {'masks':>6} {'near-dup':>8}  sizes / modes"
    click.echo(header)
    click.echo("-" * len(header))
    for cls, c in rep["per_class"].items():
        sizes = ", ".join(f"{k} ({v})" for k, v in c["sizes"].items())
        modes = ", ".join(f"{k} ({v})" for k, v in c["modes"].items())
        click.echo(
            f"{cls:<16} {c['folder']:<16} {c['images']:>6} {c['readable']:>8} {c['usable_masks']:>6} "
            f"{c['near_duplicate_images']:>8}  {sizes}; {modes}"
        )
    nd = rep["near_duplicates"]
    click.echo(
        f"copies of one radiograph (re-exports included; detail similarity >= {nd['min_detail_similarity']}, "
        f"or dHashes within {nd['max_distance_bits']} bits): "
        f"{nd['images']} images in {nd['groups']} groups, "
        f"{nd['pairs']} pairs ({nd['identical_pairs']} identical in detail, {nd['cross_class_pairs']} across classes)"
    )
    for ex in nd["examples"]:
        click.echo(f"  e.g. {ex['a']}  ~  {ex['b']}  (similarity {ex['similarity']:.3f})")
    for warning in rep.get("class_differences", []):
        click.echo(f"warning: {warning}")
    without = sum(c["images"] - c["usable_masks"] for c in rep["per_class"].values())
    if without:
        broken = " (an unreadable mask counts as none)" if rep["unreadable_masks"] else ""
        click.echo(f"images without a mask: {without} (kept; masks are paired by file name){broken}")
    for key, label in (
        ("unreadable", "unreadable images (skipped)"),
        ("unreadable_masks", "unreadable masks (ignored)"),
        ("masks_without_image", "masks without an image"),
        ("non_image_files", "non-image files (ignored)"),
        ("ignored_class_folders", "class folders not requested (ignored)"),
    ):
        items = rep[key]
        if items:
            click.echo(f"{label}: {len(items)}")
            for it in items[:5]:
                click.echo(f"  {it['error'] if isinstance(it, dict) else it}")


@data.command("inspect")
@click.argument("path", type=click.Path(), default=DEFAULT_DATA)
@_classes_opt
@click.option("--max-distance", default=4, show_default=True, type=click.IntRange(0, 256),
              help="dHash distance (bits of 256) that always counts as a copy, besides the re-export detector.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def data_inspect(path: str, classes: str | None, max_distance: int, as_json: bool) -> None:
    """Summarise a COVID-19 Radiography Database folder (or any parent of it)."""
    from .data import inspect_dataset

    rep = inspect_dataset(path, _parse_classes(classes), max_distance=max_distance, progress=True)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    else:
        _print_inspection(rep)


@data.command("split")
@click.argument("path", type=click.Path(), default=DEFAULT_DATA)
@click.option("--out", required=True, type=click.Path(), help="Manifest CSV to write.")
@_classes_opt
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--val", "val_frac", default=0.1, show_default=True, help="Validation fraction.")
@click.option("--test", "test_frac", default=0.2, show_default=True, help="Test fraction.")
@click.option("--per-class", default=None, type=int, help="Cap images per class (subsampled before splitting).")
@click.option("--max-distance", default=4, show_default=True, type=click.IntRange(0, 256),
              help="dHash distance (bits of 256) that always counts as a copy, besides the re-export detector.")
@overwrite_option("an existing --out file")
def data_split(path, out, classes, seed, val_frac, test_frac, per_class, max_distance, overwrite) -> None:
    """Write a stratified train/val/test manifest that never separates copies of one radiograph."""
    from .data import split_dataset

    all_test = val_frac == 0 and test_frac == 1  # every image in test: to score a trained model on your own data
    if not all_test and not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise click.BadParameter(f"split fractions --val {val_frac} and --test {test_frac}: each from 0 to 1, "
                                 "together below 1 (the rest is train); or --val 0 --test 1 for a manifest that "
                                 "puts every image in test", param_hint="--val/--test")
    res = split_dataset(
        path, out, _parse_classes(classes), (1 - val_frac - test_frac, val_frac, test_frac), seed, per_class,
        max_distance, overwrite=overwrite, progress=True,
    )
    counts = res.counts()
    click.echo(f"{'class':<16} {'train':>6} {'val':>6} {'test':>6}")
    for cls, c in counts.items():
        click.echo(f"{cls:<16} {c.get('train', 0):>6} {c.get('val', 0):>6} {c.get('test', 0):>6}")
    grouped = len({i for p in res.pairs for i in p[:2]})
    click.echo(f"copies of one radiograph kept together: {grouped} images ({len(res.pairs)} pairs), across splits: 0")
    if res.skipped:
        click.echo(f"skipped {len(res.skipped)} unreadable image(s), e.g. {res.skipped[0][1]}")
    click.echo(f"wrote {out} ({len(res.rows)} rows, fingerprint {res.fingerprint})")


def _parse_sets(items: tuple[str, ...]) -> dict:
    """--set key=value pairs; values parsed as TOML scalars when possible ("3" -> 3, "true" -> True)."""
    from .config import tomllib

    out: dict = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


@main.command("train")
@data_option
@click.option("--split", "split_csv", type=click.Path(), help="Manifest from `lungxray data split` (default: a seeded split made now).")
@click.option("--model", default=None, help="Registered model name (see `lungxray models`) [the config's; without one, cnn].")
@click.option("--config", "config_file", type=click.Path(), help="TOML config (e.g. configs/quick.toml); flags override it.")
@click.option("--out", type=click.Path(), help="Run folder (default runs/<model>).")
@click.option("--masks", type=click.Choice(["none", "provided", "predicted"]), default=None,
              help="Lung masks: none (whole image), provided (the dataset's masks/ files) or predicted (the shipped "
                   "U-Net's, for every image alike) [none].")
@click.option("--epochs", type=int, help="Epochs [10].")
@click.option("--batch-size", type=int, help="Images per step [32].")
@click.option("--lr", type=float, help="Learning rate (the peak, for onecycle) [0.001].")
@click.option("--image-size", type=int, help="Square model input side in pixels [256].")
@click.option("--per-class", type=int, help="Use at most this many images per class (a quick trial) [all].")
@click.option("--scheduler", type=click.Choice(["none", "plateau", "cosine", "onecycle"]), default=None,
              help="Learning-rate schedule [none].")
@click.option("--augment/--no-augment", default=None,
              help="Random affine augmentation [off]. Intensity augmentation is its own setting (--set aug_intensity=0 "
                   "turns it off).")
@click.option("--l2", type=float, help="L2 penalty added to the loss, as the original study named it [0].")
@click.option("--seed", type=int, help="Weights, shuffling and augmentation seed [0].")
@click.option("--pretrained", metavar="PATH|lung-encoder|lung-encoder-128|segmenter|imagenet",
              help="Start from these weights: a run folder, .safetensors or weights-only .pt/.pth; 'lung-encoder' (shipped, "
                   "model lungenc; it left out the default split's val/test images) or 'lung-encoder-128' (the same, "
                   "trained at 128 px on more lungs: the default's start); 'segmenter' (the shipped lung U-Net's "
                   "encoder); or 'imagenet' (downloads; densenet121).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other config setting, e.g. --set label_smoothing=0.1")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None)
@click.option("--amp/--no-amp", default=None, help="bf16 mixed precision (autocast).")
@click.option("--nproc", type=int, default=None, help="Launch N data-parallel processes with torchrun (DDP).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last complete epoch, with its own "
              "settings; only --epochs changes how many it runs to.")
@overwrite_option("an existing run folder")
@click.option("--force", is_flag=True, help="With --resume: continue even if the split or its images changed.")
def train_cmd(data, split_csv, model, config_file, out, masks, epochs, batch_size, lr, image_size, per_class, scheduler,
              augment, l2, seed, pretrained, sets, device, amp, nproc, resume, overwrite, force) -> None:
    """Train a classifier; validation drives early stopping, checkpoint choice and the scheduler."""
    from .config import load_config
    from .train import train

    if nproc and nproc > 1:
        _relaunch_with_torchrun(nproc)

    overrides = {
        "model": model, "masks": masks, "epochs": epochs, "batch_size": batch_size, "lr": lr, "image_size": image_size,
        "per_class": per_class, "scheduler": scheduler, "augment": augment, "l2": l2, "seed": seed, "pretrained": pretrained, "device": device,
        "amp": amp, **_parse_sets(sets),
    }
    cfg = load_config(config_file, overrides)
    out = out or f"runs/{cfg.model}"
    # --resume continues the run's own settings; only an explicit --epochs changes its length.
    keep_epochs = resume and overrides.get("epochs") is None
    # What the user chose, for resume's warning: flags given (a config file chooses all of its settings).
    given = None if config_file else {k for k, v in overrides.items() if v is not None}
    try:
        run = train(cfg, data, out, split_csv, resume=resume, overwrite=overwrite, progress=True, force=force,
                    keep_epochs=keep_epochs, given=given)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; the last complete epoch is saved. Continue with: lungxray train --out {out} --data {data} --resume", err=True)
        raise SystemExit(130)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"run saved in {run} (best.safetensors, history.csv, curves.png); next: lungxray evaluate {run} --data {data}")


def _relaunch_with_torchrun(nproc: int) -> None:
    """Re-run this exact command under torchrun with N processes (minus --nproc), and exit with its status."""
    import subprocess

    argv = sys.argv[1:]
    clean: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        clean.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "lungxray", *clean]
    raise SystemExit(subprocess.call(cmd))


@main.command("evaluate")
@click.argument("run", type=click.Path())
@data_option
@click.option("--split", "split_name", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--manifest", "split_csv", type=click.Path(), help="Use this split manifest instead of the run's split.csv.")
@checkpoint_option
@click.option("--out", type=click.Path(), help="Output folder (default RUN/eval-SPLIT, or -2, -3, ... when that one is taken).")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap resamples for the 95% CIs (0: no intervals).")
@click.option("--masks", type=click.Choice(["provided", "predicted"]), default=None,
              help="For a lung-masked model: which masks to evaluate with (default: as trained).")
@overwrite_option("an existing evaluation in --out")
def evaluate_cmd(run, data, split_name, split_csv, which, out, bootstrap, overwrite, masks) -> None:
    """Metrics with 95% bootstrap CIs, calibration, plots and report.html for a trained run.

    RUN may be `default`, the shipped classifier: with a manifest of your own labelled images
    (`lungxray data split DIR --out mine.csv --val 0 --test 1`) and `--out`, it scores the shipped model on them.
    """
    from .evaluate import evaluate_run

    m = evaluate_run(_shipped_if_default(run), data, split_name, split_csv, out, which, n_bootstrap=bootstrap, progress=True,
                     overwrite=overwrite, masks=masks)
    ci = "[{:.4f}, {:.4f}]".format(*m["accuracy_ci"]) if m["accuracy_ci"] else "(no interval: --bootstrap 0)"
    click.echo(f"{m['model']} on {split_name} ({m['n']} images): accuracy {m['accuracy']:.4f} {ci}  "
               f"macro F1 {m['macro']['f1']:.4f}  macro AUC {_fmt(m['macro']['auc'])}  ECE {m['ece']:.4f}")
    for cls, c in m["per_class"].items():
        click.echo(f"  {cls:<16} precision {c['precision']:.3f}  sensitivity {c['recall']:.3f}  "
                   f"specificity {c['specificity']:.3f}  F1 {c['f1']:.3f}  AUC {_fmt(c['auc'])}")
    click.echo(f"report: {Path(m['out']) / 'report.html'}")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


@main.command("cache")
@click.option("--prune", is_flag=True, help="Delete the stores this installation never reads: those of other library "
              "versions (another environment sharing the folder decodes its images again) or from older lungxray.")
def cache_cmd(prune) -> None:
    """Where decoded images are cached ($LUNGXRAY_CACHE), what each store holds, and which ones are stale."""
    from .data.cache import cache_stores, default_cache_dir, prune_cache

    base = default_cache_dir()
    stores = cache_stores(base)
    mib = lambda n: f"{n / 2**20:,.1f} MiB"  # noqa: E731
    click.echo(f"cache: {base}")
    for st in stores:
        click.echo(f"  {st['path'].relative_to(base)}  {mib(st['bytes'])}  {'in use' if st['current'] else 'stale'}")
    stale = [st for st in stores if not st["current"]]
    if prune:
        removed = prune_cache(base)
        click.echo(f"deleted {len(removed)} stale store(s), {mib(sum(st['bytes'] for st in removed))}")
    elif stale:
        click.echo(f"{len(stale)} stale store(s), {mib(sum(st['bytes'] for st in stale))}: `lungxray cache --prune` "
                   "deletes them")


@main.command("models")
def models_cmd() -> None:
    """List registered models."""
    from .models import get_spec, list_models

    for name in list_models():
        click.echo(f"{name:<12} {get_spec(name).description}")


@main.command("experiments")
@data_option
@click.option("--out", default="runs/experiments", show_default=True, type=click.Path())
@click.option("--config", "configs", multiple=True, type=click.Path(), help="Configs to compare (default: configs/seed/*.toml).")
@click.option("--split", "split_csv", type=click.Path(), help="Shared manifest (default: made once in OUT/split.csv).")
@click.option("--epochs", type=int, help="Override every config's epochs.")
@click.option("--image-size", type=int, help="Override every config's image size.")
@click.option("--per-class", type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def experiments_cmd(data, out, configs, split_csv, epochs, image_size, per_class, sets) -> None:
    """Train + evaluate the five seed models on one split; write a comparison table, figure and report."""
    from .experiments import run_experiments

    overrides = {"epochs": epochs, "image_size": image_size, "per_class": per_class, **_parse_sets(sets)}
    run_experiments(data, out, list(configs) or None, split_csv, overrides, progress=True)
    click.echo(Path(out, "comparison.md").read_text())
    click.echo(f"report: {Path(out) / 'report.html'}")


@main.command("demo")
@click.option("--out", default=None, type=click.Path(), help="Output folder (default test_results, or runs/demo with "
              "--pipeline; an earlier demo's is replaced, another folder of that name kept and -2, -3, ... used).")
@click.option("--pipeline", is_flag=True, help="Instead: inspect, split, train a small CNN and evaluate it on the sample.")
def demo_cmd(out, pipeline) -> None:
    """Predict the bundled sample with the shipped model and Grad-CAM (overlays, CSV, grid page)."""
    from .demo import default_folder, run_demo, run_pipeline_demo

    if pipeline:
        run_pipeline_demo(out or default_folder("runs/demo"), echo=click.echo, progress=True)
    else:
        run_demo(out or default_folder("test_results"), echo=click.echo, progress=True)


@main.command("audit")
@click.argument("run", type=click.Path())
@data_option
@click.option("--split", "split_name", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--masks", default="auto", show_default=True, type=click.Choice(["auto", "provided", "predicted"]),
              help="Lung masks: provided where present else predicted (auto), or one kind for all.")
@click.option("--out", type=click.Path(), help="Output folder (default RUN/audit-SPLIT, or -2, -3, ... when that one is taken).")
@overwrite_option("an existing audit in --out")
def audit_cmd(run, data, split_name, masks, out, overwrite) -> None:
    """Shortcut audit: accuracy with lungs removed / kept, Grad-CAM mass inside the lungs."""
    from .audit import audit_run

    r = audit_run(run, data, split_name, out, masks, progress=True, overwrite=overwrite)
    for k, v in r["accuracy"].items():
        lo, hi = r["accuracy_ci95"][k]
        auc = r["covid_vs_rest_auc"][k]
        recall = ", ".join(f"{c} {x:.2f}" for c, x in r["recall_per_class"][k].items() if x is not None)
        click.echo(f"accuracy ({k.replace('_', ' ')}): {v:.4f} [{lo:.4f}, {hi:.4f}]"
                   + (f"  COVID-vs-rest AUC {auc:.3f}" if auc is not None else "") + f"  recall: {recall}")
    click.echo(f"chance (majority class): {r['chance_accuracy']:.4f}")
    if "gradcam_mass_in_lungs" in r:
        g = r["gradcam_mass_in_lungs"]
        click.echo(f"Grad-CAM mass inside lungs: mean {g['mean']:.3f}, median {g['median']:.3f} "
                   f"(lungs cover {r['lung_area_fraction_mean']:.3f} of the image)")
    click.echo(r["verdict"])
    click.echo(f"report: {Path(r['out']) / 'report.html'}")


@main.command("predict")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--model", default=None, type=click.Path(), help="Run folder or .safetensors file (default: the shipped model).")
@click.option("--out", default=None, type=click.Path(),
              help="Output folder (default: test_results, or test_results-2, -3, ... when that one is taken).")
@click.option("--masks", type=click.Choice(["auto", "provided", "predicted", "none"]), default="auto", show_default=True,
              help="auto: for a model trained on masked lungs, use masks/ next to images/ (or --mask-dir), else predict one.")
@click.option("--mask-dir", type=click.Path(), help="Folder of lung masks (same relative path or file name as each image).")
@click.option("--cam", is_flag=True, help="Add a Grad-CAM heatmap panel to each overlay.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@device_option
@overwrite_option("existing outputs in --out")
@click.option("--no-overlay", is_flag=True, help="Only write predictions.csv and predictions.json.")
@runtime_option
@onnx_file_option
@click.option("--resume", is_flag=True, help="Skip inputs already in OUT/predictions.csv and add the new ones to it.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Threads reading and decoding images ahead of the model (0: in the main thread).")
def predict_cmd(paths, model, out, masks, mask_dir, cam, batch_size, device, overwrite, no_overlay, runtime, onnx_path,
                resume, workers) -> None:
    """Classify X-rays (PNG, JPEG, DICOM; files or folders): table, predictions.csv/json and overlays. Research use only."""
    from .predict import Predictor, predict_to_folder
    from .utils import next_free_folder

    _check_onnx_file(onnx_path, runtime)
    if out is None:
        if resume:
            raise click.UsageError("--resume needs the --out folder of the run to continue")
        out = str(next_free_folder("test_results"))
    predictor = None
    if runtime != "torch":
        predictor = Predictor.load(model, masks=masks, mask_dir=mask_dir, device=device, cam=cam, runtime=runtime,
                                   onnx_path=onnx_path)
    started = time.time()
    try:
        res = predict_to_folder(
            paths, out, model, masks=masks, mask_dir=mask_dir, cam=cam, batch_size=batch_size, overwrite=overwrite,
            overlays=not no_overlay, device=device, progress=True, predictor=predictor,
            resume=resume, workers=workers,
        )
    except KeyboardInterrupt:
        saved = Path(out) / "predictions.csv"
        if saved.is_file() and saved.stat().st_mtime >= started - 1:  # this run's rows, not an earlier run's file
            click.echo(f"\ninterrupted; the predictions made so far are in {out}/predictions.csv. Continue with the same "
                       "command plus --resume", err=True)
        else:
            click.echo("\ninterrupted before any prediction of this run was saved", err=True)
        raise SystemExit(130)
    new = res.rows[res.resumed:]
    names = [r["name"] if len(r["name"]) <= 50 else "..." + r["name"][-47:] for r in new]
    width = max([len("file"), *map(len, names)])
    cols = [max(len(c), 7) for c in res.classes]
    click.echo(f"{'file':<{width}}  {'prediction':<16} {'prob.':>6}  " + "  ".join(f"{c:>{w}}" for c, w in zip(res.classes, cols)))
    for name, r in zip(names, new):
        probs = "  ".join(f"{100 * r['probabilities'][c]:>{w - 1}.1f}%" for c, w in zip(res.classes, cols))
        flag = "  [OOD: " + "; ".join(r["ood"]["reasons"]) + "]" if r.get("ood", {}).get("flagged") else ""
        click.echo(f"{name:<{width}}  {r['prediction']:<16} {100 * r['probability']:>5.1f}%  {probs}{flag}")
    n_ood = sum(1 for r in new if r.get("ood", {}).get("flagged"))
    if n_ood:
        click.echo(f"warning: {n_ood} input(s) do not look like the frontal chest X-rays the model was trained on; "
                   "their predictions are not meaningful")
    m = res.model
    click.echo(f"model: {m['name']} {m['version'] or ''} (data fingerprint {m['data_fingerprint'] or 'n/a'}); "
               "research use only, not for clinical use")
    skipped = f", skipped {len(res.skipped)} unreadable file(s) (listed in skipped.csv)" if res.skipped else ""
    overlays = f"{len(res.overlays)} overlay(s), " if res.overlays else ""
    kept = f" ({res.resumed} already in {res.csv_path.name}, kept)" if res.resumed else ""
    page = res.csv_path.parent / "index.html"
    shown = f"; open {page} to see them in a grid" if page.is_file() else ""
    click.echo(f"predicted {len(new)} image(s){kept}{skipped}; wrote {overlays}{res.csv_path} and {res.json_path}{shown}")


from .segment.cli import fill_masks_cmd, segment_group  # noqa: E402
main.add_command(segment_group)
data.add_command(fill_masks_cmd)


@main.command("ship")
@click.argument("run", type=click.Path())
@checkpoint_option
@overwrite_option("the currently shipped default model")
@click.option("--half", is_flag=True, help="Store the weights as float16 (half the size; loaded back as float32).")
def ship_cmd(run, which, overwrite, half) -> None:
    """Make RUN's checkpoint the package's default classifier (src/lungxray/weights/classifier.*)."""
    from .checkpoint import ship_checkpoint
    from .predict import DEFAULT_MODEL

    for p in ship_checkpoint(run, DEFAULT_MODEL.with_suffix(""), overwrite, which, half):
        click.echo(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")


@main.command("export")
@click.argument("run", type=click.Path())
@click.option("--onnx", "onnx_out", required=True, type=click.Path(), help="Output .onnx file (its .json is written beside it).")
@click.option("--segmentation", is_flag=True, help="Also export the lung U-Net, to OUT-lungs.onnx.")
@click.option("--segmentation-weights", type=click.Path(), default=None,
              help="Lung U-Net run folder or .safetensors (default: the shipped lung-unet weights).")
@checkpoint_option
@overwrite_option("existing output files")
def export_cmd(run, onnx_out, segmentation, segmentation_weights, which, overwrite) -> None:
    """Export RUN's classifier to ONNX (dynamic batch, calibrated probabilities, metadata JSON beside it)."""
    from .export import export_all
    from .utils import read_json

    written = export_all(_shipped_if_default(run), onnx_out, segmentation, segmentation_weights, overwrite, which)
    # Measured once, by export_onnx, which refused anything beyond ONNX_TOLERANCE.
    diff = read_json(Path(written[0]).with_suffix(".json"))["onnx"]["max_abs_diff_vs_torch"]
    click.echo(f"wrote {written[0]} and {Path(written[0]).with_suffix('.json')} "
               f"(max |p_onnx - p_torch| on 8 random images: {diff:.1e})")
    for p in written[1:]:
        click.echo(f"wrote {p} and {Path(p).with_suffix('.json')} (lung U-Net: probabilities; threshold and "
                   "post-processing as in lungxray.segment)")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the API to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model", default=None, type=click.Path(), help="Run folder or .safetensors file (default: the shipped model).")
@runtime_option
@onnx_file_option
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest request body; larger uploads get 413.")
@device_option
def serve_cmd(host, port, model, runtime, onnx_path, max_upload_mb, device) -> None:
    """Serve the REST API (/v1/predict, docs at /docs) and the web page (/). Research use only."""
    from .serve import serve

    _check_onnx_file(onnx_path, runtime)
    serve(model, host, port, runtime, onnx_path, max_upload_mb, device, echo=click.echo)


@main.command("calibrate")
@click.argument("run", type=click.Path())
@data_option
@overwrite_option("the run's existing calibration")
@device_option
def calibrate_cmd(run, data, overwrite, device) -> None:
    """Fit temperature scaling and the OOD guard on RUN's validation split (for runs trained without them)."""
    from .calibrate import calibrate_existing

    meta = calibrate_existing(run, data, progress=True, overwrite=overwrite, device=device)
    c = meta["calibration"]
    if c["method"].startswith("skipped"):
        click.echo(f"calibration {c['method']} ({c['n']}): temperature left at 1.000")
    click.echo(f"temperature {meta['temperature']:.3f}: validation ECE {c['val_ece_before']:.4f} -> {c['val_ece_after']:.4f} "
               f"({c['n']} images)")
    if "ood" in meta:
        click.echo(f"OOD guard: threshold {meta['ood']['threshold']:.2f} (99.5th percentile of validation distances)")
    else:
        click.echo("OOD guard: not fitted (too few training or validation images; see the warning above)")


if __name__ == "__main__":  # pragma: no cover
    main()
