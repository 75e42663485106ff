"""The wheel: built from this tree, installed into a fresh virtual environment, `lungxray predict` works from it.

No network: the wheel is built with this environment's setuptools and installed with --no-index; the fresh
environment borrows the installed dependencies (torch and the rest) through a path file instead of downloading
them, so what is tested is lungxray's own packaging: code, console script, shipped weights.
"""

import csv
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from lungxray.models.pretrained import SHIPPED_ENCODERS

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "radiography-sample" / "Viral Pneumonia" / "images"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True)
    found = list(out.glob("lungxray-*.whl"))
    assert len(found) == 1
    return found[0]


def test_the_wheel_carries_the_shipped_weights_and_the_web_page(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    encoders = [f"lungxray/weights/{n}.{ext}" for n in SHIPPED_ENCODERS for ext in ("safetensors", "json")]
    for f in ("lungxray/weights/classifier.safetensors", "lungxray/weights/classifier.json",
              "lungxray/weights/classifier.ood.safetensors", "lungxray/weights/classifier.seen.json",
              "lungxray/weights/lung-unet.safetensors",
              *encoders, "lungxray/serve/static/index.html", "lungxray/cli.py"):
        assert f in names, f
    assert not any(n.startswith(("tests/", "examples/", "runs/")) for n in names)


def test_installed_wheel_predicts_from_a_fresh_folder(wheel, tmp_path):
    env_dir = tmp_path / "fresh-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies from this environment, appended after the fresh one's own site-packages (and without its
    # .pth files, so this checkout's editable lungxray is not visible there).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--quiet",
                    str(wheel)], check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import lungxray; print(lungxray.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where  # the installed copy, not this checkout
    image = sorted(IMAGE.glob("*.png"))[0]
    res = subprocess.run([str(env_dir / "bin" / "lungxray"), "predict", str(image), "--no-overlay"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(work / "test_results" / "predictions.csv")))
    assert len(rows) == 1 and rows[0]["prediction"] == "Viral Pneumonia"
    card = json.loads((Path(where).parent / "weights" / "classifier.json").read_text())
    assert card["masks"] == "predicted"  # the lung-only default travelled with the wheel
