"""Library errors name parameters (what a Python caller passes); the CLI prints the same errors with its flags."""

import pytest
from click.testing import CliRunner

from lungxray.cli import main
from lungxray.cli_errors import _options, flag_names
from lungxray.errors import ConfigError
from lungxray.predict import Predictor


def test_flag_names_rewrites_known_parameters_only():
    flags = {"mask_dir": "--mask-dir", "overwrite": "--overwrite", "masks": "--masks", "out": "--out"}
    msg = "masks=provided, but none found; pass mask_dir=DIR, overwrite=True, or another out=; x=1 and a.masks=2"
    assert flag_names(msg, flags) == ("--masks provided, but none found; pass --mask-dir DIR, --overwrite, or another "
                                      "--out; x=1 and a.masks=2")


def test_the_flag_is_the_invoked_commands_own():
    # One parameter, two flags: evaluate calls the split manifest --manifest, experiments calls it --split.
    assert _options(main.commands["evaluate"])["split_csv"] == "--manifest"
    assert _options(main.commands["experiments"])["split_csv"] == "--split"


def test_python_caller_reads_parameter_names(sample_dir):
    with pytest.raises(ConfigError) as err:
        Predictor.load(masks="sometimes")
    assert "masks=sometimes" in str(err.value) and "--" not in str(err.value)


def test_cli_user_reads_flags(sample_dir, tmp_path):
    image = sorted(sample_dir.glob("COVID/images/*.png"))[0]
    res = CliRunner().invoke(main, ["predict", str(image), "--masks", "provided", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--masks provided" in res.output and "--mask-dir DIR" in res.output
    assert "mask_dir=" not in res.output and "masks=" not in res.output
    shipped = tmp_path / "model.safetensors"
    shipped.write_bytes(b"")  # a checkpoint file without a run folder: evaluate needs the split named
    (tmp_path / "model.json").write_text("{}")
    res = CliRunner().invoke(main, ["evaluate", str(shipped), "--data", str(sample_dir)])
    assert res.exit_code == 2 and "--manifest" in res.output and "split_csv=" not in res.output


def test_a_path_holding_key_value_is_left_alone():
    flags = {"seed": "--seed", "out": "--out", "overwrite": "--overwrite"}
    msg = "runs/seed=1 already holds a run; use overwrite=True to replace it, or another out="
    assert flag_names(msg, flags) == "runs/seed=1 already holds a run; use --overwrite to replace it, or another --out"


def test_segment_commands_report_with_their_own_flags(tmp_path):
    res = CliRunner().invoke(main, ["segment", "train", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "(--data or --holdout-data)" in res.output
