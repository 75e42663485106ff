import pytest

from lungxray.config import TrainConfig, load_config, merge_config
from lungxray.errors import ConfigError
from pathlib import Path

SEED = Path(__file__).resolve().parents[1] / "configs" / "seed"


@pytest.mark.parametrize("path", sorted(SEED.glob("*.toml")), ids=lambda p: p.stem)
def test_seed_configs_load(path):
    cfg = load_config(path)
    assert cfg.model in ("mlp", "cnn")
    assert cfg.image_size == 256  # the original study's resolution


def test_seed_ladder_differs_where_the_study_did():
    cfgs = {p.stem: load_config(p) for p in SEED.glob("*.toml")}
    assert cfgs["1-mlp"].scheduler == "none" and cfgs["2-mlp-plateau"].scheduler == "plateau"
    assert cfgs["2-mlp-plateau"].plateau_factor == 0.1
    assert cfgs["4-cnn-augment"].augment and not cfgs["4-cnn-augment"].hflip
    assert cfgs["5-cnn-l2"].l2 > 0 and not cfgs["3-cnn"].l2


@pytest.mark.parametrize(
    "values,message",
    [
        ({"epoch": 3}, "Did you mean 'epochs'"),
        ({"learning_rate": 0.1}, "Did you mean 'lr'"),  # another tool's name, not the nearest spelling
        ({"wd": 0.01}, "Did you mean 'weight_decay'"),
        ({"scheduler": "platau"}, "Did you mean 'plateau'"),
        ({"masks": "provide"}, "Did you mean 'provided'"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"lr": -1}, r"lr=-1.0: must be >= 0"),
        ({"lr": float("nan")}, r"lr=nan: must be a finite number"),
        ({"mixup": float("inf")}, r"mixup=inf: must be a finite number"),
        ({"label_smoothing": 2}, r"label_smoothing=2.0: must be below 1"),
        ({"optimizer": "sgd", "momentum": -1}, r"momentum=-1.0: must be >= 0"),
        ({"scheduler": "plateau", "plateau_factor": 2}, r"plateau_factor=2.0: must be between 0 and 1"),
        ({"threads": -1}, r"threads=-1: must be a whole number >= 0"),
        ({"early_stopping": -2}, r"early_stopping=-2"),
        ({"aug_intensity": -1}, r"aug_intensity=-1.0: must be >= 0"),
        ({"model_args": "abc"}, r"model_args='abc': must be a table"),
        ({"classes": "COVID,Normal"}, r"must be a list of at least two class names"),
        ({"masks": "predicted", "mask_dilate": -2}, r"mask_dilate=-2: must be a whole number >= 0"),
        ({"masks": "predicted", "lung_crop": True, "lung_margin": 0.9}, r"lung_margin must be between"),
        ({"epochs": "many"}, "cannot use"),
        ({"weight_decay": 0.05}, "not used by optimizer \"adam\""),  # Adam is the default; it would be ignored
    ],
)
def test_bad_settings_are_explained(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, values)


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('model = "mlp"\nepochs = 4\nlr = 0.01\n')
    cfg = load_config(f, {"epochs": 2, "lr": None})
    assert (cfg.model, cfg.epochs, cfg.lr) == ("mlp", 2, 0.01)


def test_invalid_toml(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("model = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(f)


def test_merge_keeps_base_untouched():
    base = TrainConfig()
    merged = merge_config(base, {"epochs": 99})
    assert base.epochs != 99 and merged.epochs == 99


@pytest.mark.parametrize("path", sorted((SEED.parent).glob("*.toml")), ids=lambda p: p.stem)
def test_top_level_recipes_load_and_describe_themselves(path):
    cfg = load_config(path)
    assert cfg.model and cfg.epochs >= 1
    assert "description" in path.read_text()


def test_quick_recipe_is_lung_only_like_the_default_and_short():
    quick, shipped = load_config(SEED.parent / "quick.toml"), load_config(SEED.parent / "lungs-enc128.toml")
    # The same lung step and network as the shipped default (only input size, length, the packaged pretrained start
    # and a wider mask rim differ), so a quick model is not a whole-image model that reads the hospital.
    for key in ("masks", "lung_crop", "lung_margin", "model"):
        assert getattr(quick, key) == getattr(shipped, key), key
    # The lungs are cropped from the same 224-px read as the shipped model's, not enlarged from a 96-px image.
    assert quick.read_size == shipped.image_size > quick.image_size
    assert quick.mask_dilate >= shipped.mask_dilate
    assert quick.pretrained == "lung-encoder-128"  # shipped with the package: no pretraining step, no download
    assert quick.image_size * quick.image_size * quick.epochs < shipped.image_size ** 2 * shipped.epochs / 8


def test_geometry_settings_without_augment_are_named():
    assert load_config(None, {"hflip": True, "aug_rotate": 5.0}).unused_augmentation() == ["hflip", "aug_rotate"]
    assert load_config(None, {"hflip": True, "augment": True}).unused_augmentation() == []
    assert load_config(None, {"weight_decay": 0.05, "optimizer": "adamw"}).weight_decay == 0.05


def test_a_train_table_with_settings_outside_it_is_refused(tmp_path):
    f = tmp_path / "mix.toml"
    f.write_text('label_smoothing = 0.3\nmodel = "mlp"\n[train]\nlr = 0.005\n[eval]\nfoo = 1\n')
    with pytest.raises(ConfigError, match=r"outside its \[train\] table would be ignored \(eval, label_smoothing, model\)"):
        load_config(f)
    f.write_text('description = "kept"\n[train]\nmodel = "mlp"\nlr = 0.005\n')
    assert (load_config(f).model, load_config(f).lr) == ("mlp", 0.005)
