"""Start training from pretrained weights instead of random ones (`lungxray train --pretrained SOURCE`).

SOURCE is either a local file or folder, `imagenet`, `segmenter`, `lung-encoder` or `lung-encoder-128`:

- a lungxray run folder or `.safetensors` checkpoint (e.g. a model trained on more data or more classes:
  the backbone carries over, a head of another shape is left freshly initialised);
- a weights-only PyTorch state dict (`.pt`, `.pth`, `.bin`), read with `torch.load(weights_only=True)`, so a
  file cannot run code when it is opened;
- `segmenter`: the shipped lung U-Net (`weights/lung-unet.safetensors`), for `lungenc`, whose encoder has the
  U-Net's layout: the U-Net's nested encoder names (`net.model.1.submodule.0.conv...`) become `encoder.K...`
  and its decoder is left out. The same goes for a `lungxray segment train` run folder. A U-Net never sees a
  class label, but it may have seen the classifier's validation or test images. The shipped one left out those of
  the default split and their copies; on another split, train one with
  `segment train --exclude-split MANIFEST` and start from that run; `check_split` warns otherwise;
- `lung-encoder`: such a U-Net's encoder, shipped (`weights/lung-encoder.safetensors`, fp16, written by
  `export_unet_encoder` from the clean U-Net of docs/SEGMENTATION.md, trained on COVID-QU-Ex and the default
  split's Viral Pneumonia training pairs with `--exclude-split --exclude-split-data`): it left out the validation
  and test images of the default split and the copies of them that the split's detector finds, so a classifier on
  that split can start from it without a pretraining step;
- `lung-encoder-128`: the same kind of encoder (the shipped default's and the quick recipe's start), from a U-Net trained at
  128 px on the same pairs plus the default split's COVID and Normal training images, their masks predicted by the
  clean U-Net (`tools/pseudo_masks.py`; training rows only), with the same exclusions;
- `imagenet`: the standard torchvision ImageNet weights of a library architecture (DenseNet-121, as built by
  MONAI), downloaded once into the cache. Offline, the error says which file to fetch and how to pass it.

Tensors are matched by name and shape. Names are normalised first (lungxray's `body.` prefix, DDP's
`module.`, torchvision's DenseNet names -> MONAI's), and an RGB first convolution is summed over its colour
channels to fit grayscale input (the same response to a gray image). A file that matches nothing is an
error, never a silent random start.
"""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.error
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from ..errors import ConfigError

log = logging.getLogger(__name__)

IMAGENET_URLS = {
    # torchvision's ImageNet weights, which MONAI's DenseNet121(pretrained=True) also downloads.
    "densenet121": "https://download.pytorch.org/models/densenet121-a639ec97.pth",
}
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
ENCODER_SOURCE = "lung-encoder"
# The encoders that ship in lungxray/weights/ (NAME.safetensors + NAME.json), by the name `pretrained=` takes.
SHIPPED_ENCODERS = (ENCODER_SOURCE, "lung-encoder-128")
# Every SOURCE that is a name rather than a path (the one list the checks and messages below use).
NAMED_SOURCES = ("imagenet", "segmenter", *SHIPPED_ENCODERS)
ENCODER_FORMAT = "lungxray-unet-encoder/1"
# The lung U-Net's encoder (segment/unet.py, MONAI's layout): level K's down unit sits under K nested
# "1.submodule." hops, then "0." (the bottleneck, the deepest level, has no "0."); "2." is a decoder unit.
_UNET_LEVEL = re.compile(r"^net\.model\.((?:1\.submodule\.)*)(0\.|(?=conv\.|residual\.))(.*)$")
# torchvision's (old) DenseNet names "denselayer1.norm.1.weight" / current "denselayer1.norm1.weight"
# -> MONAI's "denselayer1.layers.norm1.weight".
_DENSE_LAYER = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def load_pretrained(model: torch.nn.Module, source: str | Path, cache_dir: str | Path | None = None) -> dict:
    """Copy matching weights from `source` into `model.body` (a lungxray Classifier).

    Returns a report for the run's metadata: source, file, sha256, loaded/total tensor counts and the
    names left at their initial values.
    """
    source = str(source)
    if source.lower() == "imagenet":
        path = _download_imagenet(model.name, cache_dir)
    elif source.lower() == "segmenter":
        from ..segment.inference import default_segmenter_path

        path = default_segmenter_path()
    elif source.lower() in SHIPPED_ENCODERS:
        path = default_encoder_path(source.lower())
    else:
        path = _local_file(source)
    raw = _read_state(path)
    from_unet = any(k.startswith("net.model.") for k in raw)
    state = _normalise_names(raw)
    target = model.body.state_dict()
    matched: dict[str, torch.Tensor] = {}
    for name, want in target.items():
        got = state.get(name)
        if got is None:
            continue
        got = _fit_input_channels(got, want)
        if tuple(got.shape) == tuple(want.shape):
            matched[name] = got.to(want.dtype)
    if not matched:
        raise ConfigError(
            f"{path}: none of its {len(state)} tensors match model {model.name!r} "
            f"(is it a checkpoint of another architecture?)"
        )
    if from_unet:
        # PReLU weights have shape (1,) at any width: a U-Net of another shape would "load" a few scalars only.
        unmatched = [k for k in target if k.startswith("encoder.") and k not in matched]
        if unmatched:
            raise ConfigError(
                f"{path}: a lung U-Net of another shape than model {model.name!r} ({len(unmatched)} encoder tensors "
                f"do not fit, first {unmatched[0]}); give the model the U-Net's channels and num_res_units "
                f"(model_args) or another U-Net")
    model.body.load_state_dict({**target, **matched})
    left = sorted(set(target) - set(matched))
    n_param = sum(1 for k in target if not k.endswith("num_batches_tracked"))
    n_loaded = sum(1 for k in matched if not k.endswith("num_batches_tracked"))
    log.info("pretrained: %d of %d tensors from %s; left initialised: %s", n_loaded, n_param, path,
             ", ".join(left[:6]) + (" ..." if len(left) > 6 else ""))
    return {
        "source": source,
        **({"segmenter_split": segmenter_split(path)} if from_unet else {}),
        "file": path.name,
        "sha256": _sha256(path),
        "loaded": n_loaded,
        "total": n_param,
        "not_loaded": [k for k in left if not k.endswith("num_batches_tracked")],
    }


def segmenter_split(path: Path) -> dict | None:
    """What a U-Net's metadata (the .json beside its weights) says it left out by `--exclude-split`, if anything."""
    from ..utils import read_json

    try:
        meta = read_json(path.with_suffix(".json"))
    except (OSError, ValueError):
        return None
    return (meta.get("training") or {}).get("excluded_by_split")


def default_encoder_path(name: str = ENCODER_SOURCE) -> Path:
    """A shipped lung U-Net encoder (`lungxray/weights/<name>.safetensors`, `name` one of `SHIPPED_ENCODERS`)."""
    from importlib import resources

    if name not in SHIPPED_ENCODERS:
        raise ConfigError(f"{name!r} is not a shipped encoder (they are: {', '.join(SHIPPED_ENCODERS)})")
    return Path(str(resources.files("lungxray") / "weights" / f"{name}.safetensors"))


def export_unet_encoder(source: str | Path, dest: str | Path, overwrite: bool = False) -> Path:
    """Write the encoder of a lung U-Net (a `segment train` run folder or its .safetensors) as fp16 safetensors.

    The tensors keep the U-Net's names, so `load_pretrained` maps and shape-checks them as it does the whole
    U-Net's; the decoder is left out. A JSON beside it carries what a reader needs to trust it: the U-Net's
    architecture, the file it came from (sha256), what it trained on and what it left out (`excluded_by_split`,
    read by `check_split`), and its validation Dice. Returns the written weights' path.
    """
    from safetensors.torch import save

    from ..utils import atomic_write_bytes, read_json, write_json

    src = Path(source)
    if src.is_dir():
        src = src / "best.safetensors"
    if not src.is_file():
        raise ConfigError(f"{source}: no such U-Net (give a `lungxray segment train` run folder or its .safetensors)")
    dest = Path(dest)
    if dest.suffix != ".safetensors":
        raise ConfigError(f"{dest}: the encoder is written as .safetensors (give a file name ending in it)")
    meta_dest = dest.with_suffix(".json")
    if dest.resolve() == src.resolve() or meta_dest.resolve() == src.with_suffix(".json").resolve():
        raise ConfigError(f"{dest}: that is the U-Net it would be read from; write the encoder elsewhere")
    folders = [p for p in (dest, meta_dest) if p.is_dir()]
    if folders:
        raise ConfigError(f"{folders[0]} is a folder; give the encoder's file name, e.g. {folders[0] / 'encoder.safetensors'}")
    existing = [p for p in (dest, meta_dest) if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} exists; pass overwrite=True (--overwrite) to replace it")
    state = _read_state(src)
    encoder = {k: v for k, v in state.items() if _UNET_LEVEL.match(k)}
    if not encoder:
        raise ConfigError(f"{src}: not a lung U-Net (no tensor named like net.model.<encoder level>)")
    try:
        meta = read_json(src.with_suffix(".json"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{src}: its metadata {src.with_suffix('.json').name} is missing or unreadable ({exc}); "
                          "export from a `lungxray segment train` run") from None
    training = dict(meta.get("training") or {})
    if isinstance(training.get("config"), dict):  # paths as typed on the training machine: keep their names only
        training["config"] = {k: (Path(v).name if k.startswith("exclude_split") and v else v)
                              for k, v in training["config"].items()}
    keep = ("config", "data_fingerprint", "train_sources", "train_pairs", "validation_sources", "excluded_by_split",
            "best_epoch", "epochs_run", "seconds_total")
    info = {
        "format": ENCODER_FORMAT,
        "architecture": meta.get("architecture"),
        "model_args": meta.get("model_args"),
        "input_size": meta.get("input_size"),
        "normalization": meta.get("normalization"),
        "source": {"file": src.name, "run": src.parent.name, "sha256": _sha256(src)},
        "tensors": len(encoder),
        "dtype": "float16",
        "training": {k: training[k] for k in keep if k in training},
        "validation": meta.get("validation"),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in encoder.items()}
    # Through atomic_write_bytes: safetensors' save_file creates owner-only files, which a wheel would then carry.
    atomic_write_bytes(dest, save(half, metadata={"format": ENCODER_FORMAT}))
    write_json(meta_dest, info)
    return dest


def check_split(report: dict | None, split_fingerprint: str) -> None:
    """Warn when a classifier starts from a lung U-Net that was not kept away from its validation and test images.

    `split_fingerprint` is `data.split.manifest_fingerprint(rows)` of the classifier's split (paths, labels, splits).
    """
    if not report or "segmenter_split" not in report:
        return
    info = report["segmenter_split"]
    if not info:
        log.warning("pretrained=%s: this lung U-Net was trained without --exclude-split, so it may have seen images "
                    "that this classifier validates or tests on (an earlier shipped U-Net did); for figures to report, train "
                    "one with `lungxray segment train --exclude-split SPLIT.csv` and start from it", report["source"])
    elif not info.get("fingerprint"):
        log.warning("pretrained=%s: this lung U-Net left out the validation and test images of %s, but its metadata "
                    "has no fingerprint of that split (it was trained before lungxray recorded one), so it cannot be "
                    "checked that it is this split", report["source"], info.get("manifest"))
    elif info["fingerprint"] != split_fingerprint:
        log.warning("pretrained=%s: this lung U-Net left out the validation and test images of another split (%s), "
                    "not of this one", report["source"], info.get("manifest"))


def segmenter_record() -> dict:
    """What a classifier trained on predicted masks records about the segmenter that cut them (file, sha256, and
    what it left out by `--exclude-split`), so that a mismatch with the segmenter at prediction time can be told."""
    from ..segment.inference import default_segmenter_path, segmenter_identity

    path = default_segmenter_path()
    return {"file": path.name, "sha256": _sha256(path), "identity": segmenter_identity(path),
            "segmenter_split": segmenter_split(path)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def segmenter_change(recorded: dict | None) -> tuple[str, str, str] | None:
    """(key, recorded value, installed value) when the installed lung U-Net is not the one `recorded`
    (`segmenter_record`) describes; None when it is, or when nothing was recorded. The identity (weights and mask
    settings) is compared where the record has one, else the weights' sha256 (records from before it was kept)."""
    from ..segment.inference import default_segmenter_path, segmenter_identity

    recorded = recorded or {}
    key = "identity" if recorded.get("identity") else "sha256"
    want = recorded.get(key)
    if not want:
        return None
    path = default_segmenter_path()
    have = segmenter_identity(path) if key == "identity" else _sha256(path)
    return None if have == want else (key, want, have)


def check_segmenter(trained_with: dict | None, model_name: str) -> None:
    """Warn when the installed lung U-Net is not the one a classifier's training masks came from.

    `trained_with` is the classifier's metadata record (`segmenter_record`); models trained before lungxray kept
    one, or without predicted masks, have none and pass.
    """
    change = segmenter_change(trained_with)
    if change:
        key, want, have = change
        log.warning("model %s was trained on masks drawn by another lung U-Net (sha256 %s..., %s %s...) than the "
                    "installed one (%s %s...): the masks may differ from those it learned from, so its accuracy "
                    "figures may not hold; use the lungxray version it was trained with", model_name,
                    trained_with.get("sha256", "?")[:12], key, want[:12], key, have[:12])


def check_segmenter_split(record: dict, split_fingerprint: str) -> None:
    """Warn when the masks a classifier trains and is scored on come from a lung U-Net that saw its val/test images."""
    info = record.get("segmenter_split")
    if not info:
        log.warning("masks=predicted: the lung U-Net that draws the masks (%s) was trained without --exclude-split, "
                    "so it may have seen images that this classifier validates or tests on; the crops it is scored on "
                    "would then be cut by a segmenter that knew those films", record["file"])
    elif info.get("fingerprint") != split_fingerprint:
        log.warning("masks=predicted: the lung U-Net that draws the masks (%s) left out the validation and test images "
                    "of another split (%s), not of this one: it may have seen images that this classifier validates "
                    "or tests on", record["file"], info.get("manifest"))


def check_source(source: str | Path) -> None:
    """Raise ConfigError now if `source` names a local file or folder that cannot serve (before minutes of work)."""
    if str(source).lower() not in NAMED_SOURCES:
        _local_file(str(source))


def _local_file(source: str) -> Path:
    p = Path(source).expanduser()
    if p.is_dir():
        cand = p / "best.safetensors"
        if not cand.is_file():
            raise ConfigError(f"pretrained={source}: a folder must be a lungxray run (no best.safetensors in it)")
        return cand
    if not p.is_file():
        raise ConfigError(f"pretrained={source}: no such file (give a run folder, a .safetensors file, a weights-only "
                          f".pt/.pth state dict, or one of {', '.join(repr(n) for n in NAMED_SOURCES)})")
    return p


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return st_load(path.read_bytes())
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable safetensors file ({exc})") from None
    if path.suffix not in _TORCH_SUFFIXES:
        raise ConfigError(f"{path}: unknown weights format (expected .safetensors, .pt, .pth or .bin)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling refusals and corrupt files come as many types
        raise ConfigError(f"{path}: cannot load as a weights-only state dict ({str(exc).splitlines()[0][:200]})") from None
    for key in ("state_dict", "model"):  # common wrappers around the state dict
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: not a state dict (a mapping of names to tensors)")
    return obj


def _normalise_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        for prefix in ("module.", "body."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        u = _UNET_LEVEL.match(name)
        if u:
            name = f"encoder.{u.group(1).count('submodule')}.{u.group(3)}"
        elif name.startswith("net.model."):
            continue  # a U-Net decoder tensor: nothing in a classifier takes it
        m = _DENSE_LAYER.match(name)
        if m:
            name = f"{m.group(1)}.layers.{m.group(2)}{m.group(3)}.{m.group(4)}"
        if name.startswith("classifier."):  # torchvision's head; MONAI's is class_layers.out
            name = "class_layers.out." + name[len("classifier."):]
        out[name] = t
    return out


def _fit_input_channels(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """An RGB first convolution for a grayscale model: sum the kernel over its colour channels."""
    if got.ndim == 4 and want.ndim == 4 and got.shape[1] == 3 and want.shape[1] == 1 and got.shape[0] == want.shape[0] \
            and got.shape[2:] == want.shape[2:]:
        return got.sum(dim=1, keepdim=True)
    return got


def _download_imagenet(model_name: str, cache_dir: str | Path | None) -> Path:
    url = IMAGENET_URLS.get(model_name)
    if url is None:
        known = ", ".join(sorted(IMAGENET_URLS))
        raise ConfigError(f"pretrained=imagenet: no published ImageNet weights for {model_name!r} (available for: {known}); "
                          "give a local file or run folder instead")
    from ..data.cache import default_cache_dir

    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "pretrained"
    dest = folder / url.rsplit("/", 1)[1]
    if dest.is_file():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # torchvision file names carry the first hex digits of their SHA-256: checked after download.
        prefix = re.search(r"-([0-9a-f]{8,})\.", dest.name)
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix.group(1) if prefix else None, progress=True)
    except (urllib.error.URLError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"pretrained=imagenet: could not download {url} ({exc}). Without internet access, fetch that file "
            f"on a connected machine and pass it as pretrained=PATH/{dest.name}"
        ) from None
    return dest
