"""Commands `lungxray segment train|predict|export-encoder` and `lungxray data fill-masks`: parse, call one library function, print.

Heavy imports (torch, MONAI) happen inside the commands so that `lungxray --help` stays fast.
"""

from __future__ import annotations

import sys

import click

from ..cli_errors import _Group


def _channels(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 16,32,64,128,256, got {value!r}") from None


@click.group("segment", cls=_Group)
def segment_group() -> None:
    """Lung segmentation: train the U-Net, predict lung masks."""


@segment_group.command("train")
@click.option("--data", "data", multiple=True, type=click.Path(), help="Training folder of image/mask pairs (repeatable), e.g. ../shared/data/covid-qu-ex-lungs/Train.")
@click.option("--holdout-data", multiple=True, type=click.Path(), help="Folder split into a training share and a held-out share scored separately (repeatable).")
@click.option("--val", "val", multiple=True, type=click.Path(), help="Validation-only folder (repeatable), e.g. ../shared/data/covid-qu-ex-lungs/Val.")
@click.option("--out", default="runs/lung-unet", show_default=True, type=click.Path(), help="Run folder.")
@click.option("--holdout-frac", type=click.FloatRange(0, 1, max_open=True), help="Share of each --holdout-data folder held out [0.3].")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=float, help="Peak learning rate (one-cycle).")
@click.option("--image-size", type=click.IntRange(min=16))
@click.option("--channels", help="U-Net channels per level, e.g. 16,32,64,128,256.")
@click.option("--num-res-units", type=click.IntRange(min=0))
@click.option("--seed", type=click.IntRange(min=0))
@click.option("--split-seed", type=click.IntRange(min=0), help="Seed of the held-out split.")
@click.option("--max-pairs", type=click.IntRange(min=1), help="At most this many pairs per folder (quick trials).")
@click.option("--exclude-split", type=click.Path(), help="A classifier's split manifest: leave out the training "
              "pairs whose image it puts in val or test, matched by path (for a U-Net that will start that classifier).")
@click.option("--exclude-split-data", type=click.Path(), help="The dataset folder of --exclude-split's manifest: also "
              "leave out copies of its val/test images under other names (found by content, e.g. in COVID-QU-Ex).")
@click.option("--amp/--no-amp", default=None, help="bfloat16 autocast [on].")
@click.option("--augment/--no-augment", default=None)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None, help="Where to train [cpu].")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last complete epoch (its saved settings).")
def train_cmd(data, holdout_data, val, out, holdout_frac, epochs, batch_size, lr, image_size, channels, num_res_units,
              seed, split_seed, max_pairs, exclude_split, exclude_split_data, amp, augment, threads, device, overwrite, resume) -> None:
    """Train the lung U-Net (Dice + BCE); the best epoch by validation Dice is kept."""
    from .train import SegTrainConfig, train_segmenter

    if not holdout_data and (holdout_frac is not None or split_seed is not None):
        raise click.UsageError("--holdout-frac and --split-seed split a --holdout-data folder; give one, or drop them")
    cfg = SegTrainConfig.from_dict({
        "holdout_frac": holdout_frac, "epochs": epochs, "batch_size": batch_size, "lr": lr, "image_size": image_size,
        "channels": _channels(channels), "num_res_units": num_res_units, "seed": seed, "split_seed": split_seed,
        "max_pairs": max_pairs, "exclude_split": exclude_split,
        "exclude_split_data": exclude_split_data, "amp": amp, "augment": augment, "threads": threads, "device": device,
    })
    run = train_segmenter(cfg, list(data), out, list(holdout_data), list(val), overwrite=overwrite, progress=True,
                          resume=resume)
    click.echo(f"run saved in {run} (best.safetensors + best.json, history.csv); "
               f"use it with: lungxray segment predict IMAGE... --weights {run} --out DIR")


@segment_group.command("predict")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder for <image stem>.png masks (lung = 255).")
@click.option("--overlay", "with_overlay", is_flag=True, help="Also write <stem>_overlay.png: the lung outline on the X-ray.")
@click.option("--weights", type=click.Path(), help="Weights (.safetensors) or a `segment train` run folder [shipped model].")
@click.option("--size", type=click.IntRange(16, 4096), help="Square mask size, e.g. 256 for the Radiography Database convention [each image's own size].")
@click.option("--overwrite", is_flag=True, help="Replace masks already in --out.")
def predict_cmd(paths, out, with_overlay, weights, size, overwrite) -> None:
    """Predict lung masks for image files (or folders of images)."""
    from .inference import Segmenter
    from .predict import predict_files

    seg = Segmenter.load(weights)
    rep = predict_files(list(paths), out, seg, with_overlay, (size, size) if size else None, overwrite,
                        progress=True)
    for path, frac in zip(rep.masks, rep.lung_fraction):
        click.echo(f"{path}  lung {frac:.1%}")
    if rep.overlays:
        click.echo(f"{len(rep.overlays)} overlay(s) in {out}")
    for path, msg in rep.skipped:
        click.echo(f"skipped: {msg}", err=True)
    if rep.skipped:
        sys.exit(1)


@segment_group.command("export-encoder")
@click.argument("source", type=click.Path())
@click.argument("dest", type=click.Path())
@click.option("--overwrite", is_flag=True, help="Replace DEST and its .json.")
def export_encoder_cmd(source, dest, overwrite) -> None:
    """Write a trained U-Net's encoder (SOURCE: a `segment train` run folder or .safetensors) to DEST.safetensors.

    fp16, with a .json beside it saying what the U-Net trained on and left out; a classifier starts from it with
    `--pretrained DEST.safetensors` (model lungenc).
    """
    from ..models.pretrained import export_unet_encoder

    path = export_unet_encoder(source, dest, overwrite=overwrite)
    click.echo(f"encoder written to {path} (+ {path.with_suffix('.json').name}); "
               f"train from it with: lungxray train --config ... --set model=lungenc --pretrained {path}")


@click.command("fill-masks")
@click.argument("dataset", type=click.Path())
@click.option("--dry-run", is_flag=True, help="List the masks that would be written; write nothing.")
@click.option("--weights", type=click.Path(exists=True), help="Segmentation weights [shipped model].")
@click.option("--classes", default=None, help="Comma-separated classes (default: COVID,Normal,Viral Pneumonia).")
def fill_masks_cmd(dataset, dry_run, weights, classes) -> None:
    """Write predicted masks (256x256, lung = 255) for images that have none; existing masks are never touched."""
    from .fill import fill_masks

    seg = None
    if weights and not dry_run:
        from .inference import Segmenter

        seg = Segmenter.load(weights)
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    rep = fill_masks(dataset, seg, dry_run=dry_run, classes=names, progress=sys.stderr.isatty())
    if dry_run:
        for image, mask in rep.planned:
            click.echo(f"would write {mask.relative_to(rep.root)}")
        click.echo(f"dry run: {len(rep.planned)} mask(s) would be written, {rep.existing} image(s) already have one")
    else:
        click.echo(f"wrote {len(rep.written)} mask(s) under {rep.root}; {rep.existing} existing mask(s) left untouched")
    for path, msg in rep.skipped:
        click.echo(f"skipped: {msg}", err=True)
    if rep.skipped:
        sys.exit(1)
