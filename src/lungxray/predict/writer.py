"""`lungxray predict` into a folder: predictions.csv/json (resumable, written atomically), overlays, index.html."""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


from ..errors import ConfigError, ImageReadError
from ..utils import atomic_write_text, check_output_folder, file_identity, output_lock, read_json, write_json
from .inputs import discover_inputs, overlay_names
from .predictor import Predictor
from .results import footer_label

log = logging.getLogger(__name__)

@dataclass
class PredictionRun:
    """What `predict_to_folder` did."""

    out: Path
    classes: list[str]
    rows: list[dict]
    skipped: list[tuple[str, str]]
    csv_path: Path
    json_path: Path
    overlays: list[Path]
    model: dict
    resumed: int = 0
    """With --resume: how many of `rows` (the first ones) an earlier run had already written."""


FLUSH_SECONDS = 2.0
"""predict_to_folder rewrites predictions.csv/.json (atomically) this often while it runs, so an interrupted run
loses at most a few seconds of work to --resume; the interval grows with the files so rewriting stays under ~10%."""


def _resume_rows(csv_path: Path, json_path: Path, classes: list[str], model: dict) -> list[dict]:
    """The rows an earlier run left in the output folder: predictions.csv says which inputs are done;
    predictions.json, when it has them, gives their full records (it is written first, so it may hold more)."""
    if not csv_path.is_file():
        return []
    header = csv_columns(classes)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
        old = read_json(json_path) if json_path.is_file() else {}
        detail = {r["path"]: r for r in old.get("rows", [])}
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{csv_path.parent}: earlier predictions cannot be read to resume ({exc}); "
                          "use overwrite=True to start again") from None
    if not table or table[0] != header or any(len(r) != len(header) for r in table[1:]):
        raise ConfigError(f"{csv_path} does not hold this model's predictions (expected columns {', '.join(header)}); "
                          "resume=True needs the same model: use another out=, or overwrite=True to start again")
    before = dict(old.get("model", {}))
    if "image_size" in before:  # files from before read_size was recorded: those models read at their input size
        before.setdefault("read_size", before["image_size"])
    for key in ("name", "version", "data_fingerprint", "image_size", "read_size", "trained_masks"):
        if key in before and before[key] != model.get(key):
            raise ConfigError(f"{json_path} was made with another model ({key} {before[key]!r}, now "
                              f"{model.get(key)!r}); resume=True needs the same model: use another out=, or overwrite=True")
    rows = []
    for path, prediction, probability, *rest in table[1:]:
        path = csv_unsafe(path)
        probs, (flagged, reasons) = rest[: len(classes)], rest[len(classes):]
        try:
            row = detail.get(path) or {"path": path, "name": path, "prediction": prediction,
                                       "probability": float(probability),
                                       "probabilities": {c: float(v) for c, v in zip(classes, probs)},
                                       "ood": {"flagged": flagged == "true",
                                               "reasons": [r for r in csv_unsafe(reasons).split(REASON_SEP) if r]}}
        except ValueError:
            raise ConfigError(f"{csv_path}: unreadable row for {path}; use overwrite=True to start again") from None
        rows.append(row)
    return rows


def _check_resume_settings(old: dict, now: dict, old_cwd: str | None, json_path: Path) -> None:
    """Refuse to add rows made with other mask or Grad-CAM settings to an earlier run's: one file would describe
    two kinds of prediction under one set of settings."""
    for key in ("masks", "mask_dir", "cam"):
        if key not in old:
            continue
        was = old[key]
        if key == "mask_dir" and was:
            was = str((Path(old_cwd) if old_cwd else Path.cwd()).joinpath(was).resolve())
        if was != now[key]:
            raise ConfigError(f"{json_path} was made with {key}={old[key]}, now {key}={now[key]}; resume=True "
                              "continues with the same settings: give those again, or use another out= for the new ones")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP)."""


def csv_safe(cell: str) -> str:
    """Neutralise a text cell for spreadsheets: a leading formula character gets a `'` before it.
    predictions.json keeps the real value; `csv_unsafe` undoes this when a CSV is read back (--resume)."""
    return "'" + cell if cell.startswith(FORMULA_START) or cell.startswith("'") and cell[1:2] in FORMULA_START + ("'",) else cell


def csv_unsafe(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:2] in FORMULA_START + ("'",) else cell


REASON_SEP = "; "


def csv_columns(classes: Sequence[str]) -> list[str]:
    """predictions.csv's columns: the answer, one probability per class, and the out-of-distribution flag with its
    reasons (a flagged row's answer is about an input unlike the training X-rays: read it with that)."""
    return ["path", "prediction", "probability", *classes, "ood_flagged", "ood_reasons"]


def _table(header: Sequence[str], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180; a "\r" inside a file name is then quoted, not a row end
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _csv_text(rows: list[dict], classes: list[str]) -> str:
    def cells(r: dict) -> list[str]:
        ood = r.get("ood") or {}
        return [csv_safe(r["path"]), r["prediction"], f"{r['probability']:.6f}",
                *(f"{r['probabilities'][c]:.6f}" for c in classes),
                "true" if ood.get("flagged") else "false", csv_safe(REASON_SEP.join(ood.get("reasons") or []))]

    return _table(csv_columns(classes), (cells(r) for r in rows))


def predict_to_folder(paths: Sequence[str | Path], out: str | Path = "test_results", model: str | Path | None = None,
                      **options) -> "PredictionRun":
    """Classify files into folder `out`; `options` and what is written are those of `_predict_to_folder`.

    The folder is checked for writing before the model loads, and locked while the run writes it: a second
    run aimed at the same folder is refused instead of silently replacing this run's rows."""
    from ..runs import is_run_folder

    if is_run_folder(out):
        raise ConfigError(f"{out} is a training run's folder; predictions go into a folder of their own "
                          f"(e.g. out={Path(out) / 'predictions'})")
    created = not Path(out).exists()
    check_output_folder(out)
    try:
        with output_lock(out, "predict"):
            return _predict_to_folder(paths, out, model, **options)
    except BaseException:
        if created and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise


def _predict_to_folder(
    paths: Sequence[str | Path],
    out: str | Path = "test_results",
    model: str | Path | None = None,
    masks: str = "auto",
    mask_dir: str | Path | None = None,
    cam: bool = False,
    batch_size: int = 16,
    overwrite: bool = False,
    overlays: bool = True,
    device: str = "cpu",
    progress: bool = False,
    predictor: Predictor | None = None,
    resume: bool = False,
    workers: int = 0,
) -> PredictionRun:
    """Predict files/folders and write `predictions.csv`, `predictions.json` and one overlay PNG per input.

    Nothing is overwritten unless `overwrite`: existing outputs are counted and refused before any work.
    With `resume`, the inputs already in `out/predictions.csv` are skipped and the new rows are added to it
    (overlays of inputs it does not list yet, left by an interrupted run, are redone); without a predictions.csv
    there, `resume` is a fresh run and gets the overwrite check. No output ever replaces an input file. Both files are
    rewritten atomically every few seconds while the run goes on, so an interrupted run can be resumed.
    Images are streamed: memory holds one batch plus the read-ahead of `workers` decoding threads.
    Pass `predictor` to reuse a loaded one (then `model`, `masks`, `mask_dir`, `cam` and `device` are its own).

    Returns:
        PredictionRun with the rows (earlier rows first when resuming, then input order), skipped files
        and written paths.
    """
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("resume=True continues the predictions in out= and overwrite=True replaces them: give only one")
    pred = predictor or Predictor.load(model, masks=masks, mask_dir=mask_dir, device=device, cam=cam)
    files = discover_inputs(paths, exclude=[out])
    # Inputs by file identity (device, inode): the same file under another path, a hard link or another letter case
    # on macOS/Windows is still an input.
    inputs = {file_identity(f.path) for f in files}
    csv_path, json_path, skipped_path = out / "predictions.csv", out / "predictions.json", out / "skipped.csv"
    desc = pred.describe()
    # Only a folder holding an earlier run's predictions.csv is continued; anywhere else resume=True is a fresh
    # run and gets its overwrite check.
    resuming = resume and csv_path.is_file()
    done = _resume_rows(csv_path, json_path, pred.classes, desc) if resuming else []
    settings = {"masks": pred.masks, "mask_dir": str(Path(pred.mask_dir).resolve()) if pred.mask_dir else None,
                "cam": pred.cam_enabled}
    if done:
        old = read_json(json_path) if json_path.is_file() else {}
        _check_resume_settings(old.get("settings") or {}, settings, old.get("cwd"), json_path)
        # Relative paths are relative to where the earlier run was started (its "cwd"), not to where this one is.
        base = Path(old["cwd"]) if old.get("cwd") else Path.cwd()
        seen = {r["path"] for r in done} | {str((base / r["path"]).resolve()) for r in done}
        files = [f for f in files if str(f.path) not in seen and str(f.path.resolve()) not in seen]
    names = overlay_names(files, taken=[r["overlay"] for r in done if r.get("overlay")])
    targets = [csv_path, json_path, skipped_path] + ([out / names[f.path] for f in files] + [out / "index.html"]
                                                     if overlays else [])
    clobbered = [t for t in targets if t.exists() and file_identity(t) in inputs]
    if clobbered:  # whatever overwrite says: an input is never replaced by an output
        raise ConfigError(f"{clobbered[0]} is one of the inputs and would be replaced by an output; "
                          "choose an out= folder that holds no input image")
    existing = [t for t in targets if t.exists()]
    if resuming and overlays:
        # An interrupted run's overlays of inputs it had not listed yet are redone; a file of the user's that only
        # has the name of a new overlay is not lungxray's to replace.
        from ..report.overlay import is_overlay

        new_overlays = [out / names[f.path] for f in files]
        foreign = [t for t in new_overlays if t.exists() and not is_overlay(t)]
        if foreign:
            raise ConfigError(f"{foreign[0]} exists and is not an overlay lungxray drew; resume=True would replace it "
                              "with the overlay of a new input: move it, or use another out=")
    if existing and not overwrite and not resuming:
        hint = ("(resume=True found no predictions.csv there to continue) " if resume
                else "resume=True to continue them, ")
        raise ConfigError(
            f"{len(existing)} file(s) in {out} would be overwritten (e.g. {existing[0]}); "
            f"pass overwrite=True to replace them, {hint}or choose another out="
        )
    pred.check_inputs(files)
    rows: list[dict] = list(done)
    written: list[Path] = []
    skipped: list[tuple[str, str]] = []
    overlay_of = {str(path): rel for path, rel in names.items()}
    label = footer_label(pred.model.name, pred.meta.get("version"))

    def save() -> None:
        # JSON first: after a crash between the two, predictions.csv (what --resume trusts) lists no row
        # that predictions.json lacks.
        write_json(json_path, {
            "provenance": pred.provenance,
            "model": desc,
            "settings": {**settings, "batch_size": batch_size},
            "cwd": str(Path.cwd()),  # what the rows' relative paths are relative to (for --resume from elsewhere)
            "classes": pred.classes,
            "n_predicted": len(rows),
            "skipped": [{"path": p, "error": e} for p, e in skipped],
            "rows": rows,
        })
        atomic_write_text(csv_path, _csv_text(rows, pred.classes))
        if skipped:  # the files that gave no prediction, and why, for whoever reads only the CSVs
            atomic_write_text(skipped_path, _table(["path", "error"], ([csv_safe(p), csv_safe(e)] for p, e in skipped)))
        elif skipped_path.exists():  # an earlier (replaced) run's list says nothing about this one
            skipped_path.unlink()

    last_save, save_cost = time.monotonic(), 0.0
    try:
        for res in pred.predict_paths(files, batch_size=batch_size, skipped=skipped, progress=progress, workers=workers):
            row = res.row()
            row["overlay"] = None
            if overlays:
                from ..report.overlay import write_overlay  # matplotlib: imported only when overlays are drawn

                rel = overlay_of[res.path]
                written.append(write_overlay(out / rel, res, pred.classes, model_label=label))
                row["overlay"] = rel.as_posix()
            rows.append(row)
            if time.monotonic() - last_save >= max(FLUSH_SECONDS, 10 * save_cost):
                started = time.monotonic()
                save()
                last_save = time.monotonic()
                save_cost = last_save - started
    except KeyboardInterrupt:
        if len(rows) > len(done):
            save()  # keep what is done: `--resume` continues from here
        raise
    if not rows:
        raise ImageReadError(f"none of the {len(files)} file(s) could be read as an X-ray image (first: {skipped[0][1]})")
    save()
    if overlays:
        from ..report.gallery import write_gallery

        write_gallery(out, rows, desc, pred.classes)
    return PredictionRun(out, pred.classes, rows, skipped, csv_path, json_path, written, desc, resumed=len(done))
