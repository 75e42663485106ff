"""--pretrained: weights from a run, a weights-only state dict or (offline-tested) the ImageNet download."""

import json
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file as load_file_st

from lungxray.checkpoint import save_checkpoint
from lungxray.config import load_config
from lungxray.data.api import split_dataset
from lungxray.errors import ConfigError
from lungxray.models import create_model
from lungxray.models.pretrained import load_pretrained
from lungxray.train import train

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
DEFAULT_SPLIT = Path(__file__).resolve().parents[2] / "configs" / "splits" / "covid19-radiography-v2-seed0.csv"
TINY_DENSE = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1)}


def _torchvision_style(state: dict) -> dict:
    """Rename MONAI DenseNet keys the way torchvision's published .pth files spell them."""
    out = {}
    for k, v in state.items():
        k = k.replace(".layers.norm1", ".norm.1").replace(".layers.conv1", ".conv.1")
        k = k.replace(".layers.norm2", ".norm.2").replace(".layers.conv2", ".conv.2")
        out[k.replace("class_layers.out.", "classifier.")] = v
    return out


def test_backbone_of_a_run_carries_over_and_a_new_head_stays_fresh(tmp_path):
    torch.manual_seed(0)
    src = create_model("xrnet", input_size=64, classes=["COVID", "Normal", "Viral Pneumonia"])
    save_checkpoint(tmp_path / "run" / "best", src, {})
    dst = create_model("xrnet", input_size=64, classes=["COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"])
    before_head = dst.body.head[3].weight.clone()
    report = load_pretrained(dst, tmp_path / "run")
    assert torch.equal(dst.body.stem[0].weight, src.body.stem[0].weight)
    assert torch.equal(dst.body.stages[3][1].conv2.weight, src.body.stages[3][1].conv2.weight)
    assert torch.equal(dst.body.head[3].weight, before_head)  # 4 outputs vs 3: not loaded
    assert report["not_loaded"] == ["head.3.bias", "head.3.weight"]
    assert report["loaded"] == report["total"] - 2 and len(report["sha256"]) == 64


def test_torchvision_densenet_file_maps_to_monai_and_rgb_conv_becomes_gray(tmp_path):
    torch.manual_seed(1)
    rgb = create_model("densenet121", input_size=64, **TINY_DENSE).body
    rgb.features.conv0 = torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False)  # torchvision's RGB stem
    state = _torchvision_style(rgb.state_dict())
    state["classifier.weight"] = torch.randn(1000, state["classifier.weight"].shape[1])  # ImageNet head
    state["classifier.bias"] = torch.zeros(1000)
    assert "features.denseblock1.denselayer1.norm.1.weight" in state
    torch.save(state, tmp_path / "densenet121-tiny.pth")

    model = create_model("densenet121", input_size=64, **TINY_DENSE)
    report = load_pretrained(model, tmp_path / "densenet121-tiny.pth")
    assert torch.allclose(model.body.features.conv0.weight, rgb.features.conv0.weight.sum(1, keepdim=True))
    got = model.body.features.denseblock1.denselayer1.layers.norm1.weight
    assert torch.equal(got, rgb.features.denseblock1.denselayer1.layers.norm1.weight)
    assert set(report["not_loaded"]) == {"class_layers.out.weight", "class_layers.out.bias"}


def test_pickled_code_and_unrelated_files_are_refused(tmp_path):
    model = create_model("xrnet", input_size=64)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="weights-only"):
        load_pretrained(model, tmp_path / "evil.pt")
    cnn = create_model("cnn", input_size=64)
    save_checkpoint(tmp_path / "cnn" / "best", cnn, {})
    with pytest.raises(ConfigError, match="none of its .* tensors match model 'xrnet'"):
        load_pretrained(model, tmp_path / "cnn")
    with pytest.raises(ConfigError, match="no such file"):
        load_pretrained(model, tmp_path / "missing.pth")
    (tmp_path / "w.txt").write_text("hello")
    with pytest.raises(ConfigError, match="unknown weights format"):
        load_pretrained(model, tmp_path / "w.txt")


def test_imagenet_offline_says_what_to_do(tmp_path, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    model = create_model("densenet121", input_size=64, **TINY_DENSE)
    with pytest.raises(ConfigError, match="could not download .*densenet121-a639ec97.pth.*pretrained=PATH"):
        load_pretrained(model, "imagenet", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="no published ImageNet weights for 'xrnet'"):
        load_pretrained(create_model("xrnet", input_size=64), "imagenet", cache_dir=tmp_path)


def test_imagenet_file_already_in_cache_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    src = create_model("densenet121", input_size=64, **TINY_DENSE)
    (tmp_path / "pretrained").mkdir()
    torch.save(_torchvision_style(src.body.state_dict()), tmp_path / "pretrained" / "densenet121-a639ec97.pth")
    model = create_model("densenet121", input_size=64, **TINY_DENSE)
    load_pretrained(model, "imagenet", cache_dir=tmp_path)
    assert torch.equal(model.body.features.conv0.weight, src.body.features.conv0.weight)


def test_train_with_pretrained_starts_from_the_file_and_records_it(tmp_path):
    split_csv = tmp_path / "split.csv"
    split_dataset(SAMPLE, split_csv, seed=0, progress=False)
    base = {"model": "xrnet", "image_size": 32, "epochs": 1, "batch_size": 8, "lr": 0.0, "calibrate": False,
            "optimizer": "sgd", "momentum": 0.0}
    first = train(load_config(None, base), SAMPLE, tmp_path / "a", split_csv, progress=False)
    second = train(load_config(None, {**base, "pretrained": str(first)}), SAMPLE, tmp_path / "b", split_csv, progress=False)
    from safetensors.torch import load_file

    wa, wb = load_file(first / "best.safetensors"), load_file(second / "best.safetensors")
    # lr = 0: the weights are exactly the pretrained ones (BatchNorm running stats move, so compare conv kernels).
    assert torch.equal(wa["body.stem.0.weight"], wb["body.stem.0.weight"])
    meta = json.loads((second / "best.json").read_text())
    assert meta["pretrained"]["source"] == str(first) and meta["pretrained"]["loaded"] == meta["pretrained"]["total"]
    # Continuing the run keeps the provenance (the weights now come from state.pt, not the file).
    train(load_config(None, {**base, "pretrained": str(first), "epochs": 2}), SAMPLE, tmp_path / "b", split_csv,
          resume=True, progress=False)
    last = json.loads((second / "last.json").read_text())
    assert last["epoch"] == 2 and last["pretrained"] == meta["pretrained"]


def test_cli_names_a_missing_pretrained_file_without_a_traceback(tmp_path):
    from click.testing import CliRunner

    from lungxray.cli import main

    result = CliRunner().invoke(main, ["train", "--data", str(SAMPLE), "--model", "xrnet", "--image-size", "32",
                                       "--epochs", "1", "--out", str(tmp_path / "run"),
                                       "--pretrained", str(tmp_path / "nope.safetensors")])
    assert result.exit_code != 0
    assert "nope.safetensors: no such file" in result.output and "Traceback" not in result.output


def _unet_levels(unet) -> list[torch.nn.Module]:
    """The shipped U-Net's encoder units, deepest last, found by walking its nested skip connections."""
    levels, level = [], unet.net.model
    while isinstance(level, torch.nn.Sequential) and len(level) == 3:
        levels.append(level[0])
        level = level[1].submodule
    return levels + [level]


def test_segmenter_weights_start_lungenc_with_the_unet_encoder_and_a_fresh_head():
    from lungxray.segment.inference import default_segmenter_path
    from lungxray.segment.model import load_segmenter

    torch.manual_seed(0)
    model = create_model("lungenc", input_size=64)
    head = model.body.head[3].weight.clone()
    report = load_pretrained(model, "segmenter")
    assert report["file"] == "lung-unet.safetensors"
    assert report["not_loaded"] == ["head.3.bias", "head.3.weight"]  # the decoder is not asked for, the head is new
    assert torch.equal(model.body.head[3].weight, head)
    unet, _ = load_segmenter(default_segmenter_path())
    unet.eval(), model.eval()
    levels = _unet_levels(unet)
    assert len(levels) == len(model.body.encoder) == 5
    x = (torch.rand(2, 1, 64, 64) - 0.5) / 0.25
    ours, theirs = x, x
    with torch.no_grad():
        for k in range(5):  # every level computes what the U-Net's does, in order
            ours, theirs = model.body.encoder[k](ours), levels[k](theirs)
            assert torch.allclose(ours, theirs, atol=1e-5), f"encoder level {k} differs from the U-Net's"


def test_segmenter_weights_do_not_fit_another_architecture():
    with pytest.raises(ConfigError, match="none of its"):
        load_pretrained(create_model("xrnet", input_size=64), "segmenter")
    # A narrower lungenc shares only shape-(1,) PReLU weights with the shipped U-Net: refused, not a near-random start.
    with pytest.raises(ConfigError, match="lung U-Net of another shape"):
        load_pretrained(create_model("lungenc", input_size=64, channels=[8, 16, 32, 64, 128]), "segmenter")


def _manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["path,mask_path,label,split,group"] + [f"{p},,{label},{split},{k}" for k, (p, label, split) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _tiny_unet_leaving_out(tmp_path: Path, held_split: str) -> tuple[Path, Path]:
    """A one-epoch tiny U-Net on the sample's Viral Pneumonia pairs, trained with --exclude-split of a manifest that
    puts the first two in `held_split`. Returns (run folder, manifest)."""
    from lungxray.segment import SegTrainConfig, train_segmenter

    vp = SAMPLE / "Viral Pneumonia"
    names = sorted(p.name for p in (vp / "images").iterdir())
    split = _manifest(tmp_path / "split.csv", [(f"Viral Pneumonia/images/{n}", "Viral Pneumonia", held_split if k < 2 else "train")
                                              for k, n in enumerate(names)])
    cfg = SegTrainConfig.from_dict({"image_size": 32, "channels": [4, 8, 16], "num_res_units": 1, "epochs": 1,
                                    "batch_size": 4, "holdout_frac": 0.0, "exclude_split": str(split), "amp": False})
    return train_segmenter(cfg, [vp], tmp_path / "unet", progress=False), split


def test_a_segment_run_that_left_out_the_split_starts_lungenc_and_another_split_is_warned_about(tmp_path, caplog):
    from lungxray.data.split import manifest_fingerprint, read_manifest
    from lungxray.models.pretrained import check_split

    run, split = _tiny_unet_leaving_out(tmp_path, "test")
    names = sorted(p.name for p in (SAMPLE / "Viral Pneumonia" / "images").iterdir())
    model = create_model("lungenc", input_size=32, channels=[4, 8, 16], num_res_units=1)
    report = load_pretrained(model, run)
    assert report["not_loaded"] == ["head.3.bias", "head.3.weight"]
    assert report["segmenter_split"]["fingerprint"] == manifest_fingerprint(read_manifest(split))
    caplog.clear()
    ours = lambda: [r.getMessage() for r in caplog.records if r.name == "lungxray.models.pretrained"]  # noqa: E731
    with caplog.at_level("WARNING", logger="lungxray.models.pretrained"):
        check_split(report, manifest_fingerprint(read_manifest(split)))
        assert not ours()  # the same split: nothing to say
        other = _manifest(tmp_path / "other.csv", [(f"Viral Pneumonia/images/{names[0]}", "Viral Pneumonia", "train")])
        check_split(report, manifest_fingerprint(read_manifest(other)))
        # The shipped segmenter (since session 14) left out the default split's val/test images: another split is
        # warned about, the default one is not.
        shipped = load_pretrained(create_model("lungenc", input_size=64), "segmenter")
        check_split(shipped, "any")
        check_split(shipped, manifest_fingerprint(read_manifest(DEFAULT_SPLIT)))
        check_split({"source": "old-unet", "segmenter_split": None}, "any")  # a U-Net trained without the option
    messages = ours()
    assert len(messages) == 3
    assert "another split (split.csv)" in messages[0]
    assert "another split (covid19-radiography-v2-seed0.csv)" in messages[1]
    assert "old-unet" in messages[2] and "without --exclude-split" in messages[2]


def test_check_split_says_when_a_u_net_records_its_manifest_but_no_fingerprint(caplog):
    from lungxray.models.pretrained import check_split

    report = {"source": "old-run", "segmenter_split": {"manifest": "v2.csv", "pairs": {"VP": 3}}}
    with caplog.at_level("WARNING", logger="lungxray.models.pretrained"):
        check_split(report, "0123456789abcdef")
    (message,) = [r.getMessage() for r in caplog.records if r.name == "lungxray.models.pretrained"]
    assert "v2.csv" in message and "no fingerprint" in message and "another split" not in message


def test_an_exported_encoder_is_the_u_nets_encoder_in_fp16_and_keeps_what_it_left_out(tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from lungxray.cli import main
    from lungxray.data.split import manifest_fingerprint, read_manifest
    from lungxray.models.pretrained import export_unet_encoder

    run, split = _tiny_unet_leaving_out(tmp_path, "val")
    dest = export_unet_encoder(run, tmp_path / "enc" / "lung-encoder.safetensors")
    assert dest.stat().st_mode & 0o044 == 0o044  # readable by others, as a wheel's files must be
    tensors = load_file(dest)
    unet = load_file(run / "best.safetensors")
    decoder = [k for k in unet if k.startswith("net.model.") and k not in tensors]
    assert decoder and all(".2." in k or k.startswith("net.model.2.") for k in decoder)  # only decoder units left out
    assert all(t.dtype == torch.float16 for k, t in tensors.items() if not k.endswith("num_batches_tracked"))
    meta = json.loads(dest.with_suffix(".json").read_text())
    assert meta["training"]["excluded_by_split"]["fingerprint"] == manifest_fingerprint(read_manifest(split))
    assert str(tmp_path) not in dest.with_suffix(".json").read_text()  # no path of the training machine
    assert meta["training"]["config"]["exclude_split"] == "split.csv"
    assert meta["source"]["run"] == "unet" and len(meta["source"]["sha256"]) == 64

    from_run, from_file = (create_model("lungenc", input_size=32, channels=[4, 8, 16], num_res_units=1) for _ in range(2))
    load_pretrained(from_run, run)
    report = load_pretrained(from_file, dest)
    assert report["segmenter_split"] == meta["training"]["excluded_by_split"]
    for (name, a), b in zip(from_run.body.encoder.state_dict().items(), from_file.body.encoder.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3), name

    with pytest.raises(ConfigError, match="exists"):
        export_unet_encoder(run, dest)
    with pytest.raises(ConfigError, match="the U-Net it would be read from"):
        export_unet_encoder(run, run / "best.safetensors", overwrite=True)
    with pytest.raises(ConfigError, match="no such U-Net"):
        export_unet_encoder(tmp_path / "nope", tmp_path / "x.safetensors")
    classifier = tmp_path / "clf"
    save_checkpoint(classifier / "best", create_model("xrnet", input_size=32), {})
    with pytest.raises(ConfigError, match="not a lung U-Net"):
        export_unet_encoder(classifier, tmp_path / "x.safetensors")
    cli = CliRunner().invoke(main, ["segment", "export-encoder", str(run), str(dest)])
    assert cli.exit_code != 0 and "exists" in cli.output and "Traceback" not in cli.output
    cli = CliRunner().invoke(main, ["segment", "export-encoder", str(run), str(dest), "--overwrite"])
    assert cli.exit_code == 0 and "--pretrained" in cli.output


@pytest.mark.parametrize("name, copies", [
    ("lung-encoder", {"covid-qu-ex-lungs/Train": 66, "covid19-radiography/Viral Pneumonia": 0}),
    # At 128 px the detector also took one pseudo-mask pair and one Viral Pneumonia pair for copies (left out).
    ("lung-encoder-128", {"covid-qu-ex-lungs/Train": 66, "runs/pseudo-train": 1,
                          "covid19-radiography/Viral Pneumonia": 1, "covid-qu-ex-lungs/Val": 20}),
])
def test_the_shipped_lung_encoders_left_out_the_default_splits_val_and_test_images(name, copies):
    from lungxray.data.split import manifest_fingerprint, read_manifest

    default_split = Path(__file__).resolve().parents[2] / "configs" / "splits" / "covid19-radiography-v2-seed0.csv"
    rows = read_manifest(default_split)
    model = create_model("lungenc", input_size=64)
    report = load_pretrained(model, name)
    assert report["file"] == f"{name}.safetensors"
    assert report["not_loaded"] == ["head.3.bias", "head.3.weight"]
    left_out = report["segmenter_split"]
    assert left_out["fingerprint"] == manifest_fingerprint(rows)
    held_vp = sum(1 for r in rows if r.label == "Viral Pneumonia" and r.split in ("val", "test"))
    assert sum(left_out["pairs"].values()) == held_vp  # every Viral Pneumonia val/test image with a mask went
    # and copies under other names, looked for by content (exclude_split_data): 66 in COVID-QU-Ex's Train folder
    assert left_out["copies"] == copies


def test_the_two_shipped_encoders_differ_and_an_unknown_name_is_refused():
    from lungxray.models.pretrained import default_encoder_path

    a, b = (load_file_st(default_encoder_path(n)) for n in ("lung-encoder", "lung-encoder-128"))
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="not a shipped encoder"):
        default_encoder_path("lung-encoder-64")


def test_frozen_parts_keep_their_pretrained_weights_and_statistics_and_the_rest_trains(tmp_path):
    from safetensors.torch import load_file

    split_csv = tmp_path / "split.csv"
    split_dataset(SAMPLE, split_csv, seed=0, progress=False)
    tiny = {"model": "lungenc", "model_args": {"channels": [4, 8, 16], "num_res_units": 1}, "image_size": 32,
            "epochs": 2, "batch_size": 8, "lr": 0.05, "calibrate": False, "optimizer": "sgd"}
    start = train(load_config(None, {**tiny, "epochs": 1}), SAMPLE, tmp_path / "start", split_csv, progress=False)
    run = train(load_config(None, {**tiny, "pretrained": str(start), "freeze": "encoder.0, encoder.1"}), SAMPLE,
                tmp_path / "frozen", split_csv, progress=False)
    before, after = load_file(start / "best.safetensors"), load_file(run / "last.safetensors")
    for name, t in before.items():
        if name.startswith(("body.encoder.0.", "body.encoder.1.")):
            assert torch.equal(t, after[name]), f"{name} moved although frozen"  # weights and BN running stats
    assert not torch.equal(before["body.encoder.2.conv.unit0.conv.weight"], after["body.encoder.2.conv.unit0.conv.weight"])
    assert not torch.equal(before["body.encoder.2.conv.unit0.adn.N.running_mean"],
                           after["body.encoder.2.conv.unit0.adn.N.running_mean"])
    assert json.loads((run / "config.json").read_text())["freeze"] == "encoder.0, encoder.1"
    # A resumed run is frozen as it started.
    frozen_cfg = {**tiny, "pretrained": str(start), "freeze": "encoder.0"}
    train(load_config(None, {**frozen_cfg, "epochs": 1}), SAMPLE, tmp_path / "resumed", split_csv, progress=False)
    resumed = train(load_config(None, {**frozen_cfg, "epochs": 2}), SAMPLE, tmp_path / "resumed", split_csv,
                    resume=True, progress=False)
    after = load_file(resumed / "last.safetensors")
    assert json.loads((resumed / "last.json").read_text())["epoch"] == 2
    for name, t in before.items():
        if name.startswith("body.encoder.0."):
            assert torch.equal(t, after[name]), f"{name} moved after --resume although frozen"
    # freeze_bn = false: the frozen weights stay, their batch-norm statistics follow the new images.
    adapted = train(load_config(None, {**tiny, "pretrained": str(start), "freeze": "encoder.0", "freeze_bn": False}),
                    SAMPLE, tmp_path / "adapted", split_csv, progress=False)
    after = load_file(adapted / "last.safetensors")
    for name in ("conv.unit0.conv.weight", "conv.unit0.adn.N.weight", "conv.unit0.adn.N.bias", "residual.weight"):
        assert torch.equal(before[f"body.encoder.0.{name}"], after[f"body.encoder.0.{name}"]), name
    assert not torch.equal(before["body.encoder.0.conv.unit0.adn.N.running_mean"],
                           after["body.encoder.0.conv.unit0.adn.N.running_mean"])


def test_freeze_names_a_part_that_is_not_there_and_refuses_to_freeze_everything():
    from lungxray.train import freeze_parts

    model = create_model("lungenc", input_size=32, channels=[4, 8, 16], num_res_units=1)
    with pytest.raises(ConfigError, match="no part named 'encoder.9'.*its parts: encoder, head"):
        freeze_parts(model, "encoder.0,encoder.9")
    with pytest.raises(ConfigError, match="leaves nothing to train"):
        freeze_parts(create_model("lungenc", input_size=32, channels=[4, 8, 16], num_res_units=1), "encoder,head")
    parts = freeze_parts(model, "encoder.0")
    assert parts == [model.body.encoder[0]]
    assert not any(p.requires_grad for p in model.body.encoder[0].parameters())
    assert all(p.requires_grad for p in model.body.encoder[1].parameters())
