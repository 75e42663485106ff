"""A cold `lungxray predict ONE.png --no-overlay` imports only what it uses (issue 14: cold start).

Heavy libraries the shipped default does not need on this path (MONAI's import alone took longer than
torch's) must stay out of it; this fails when an eager import brings one back.
"""

import json
import subprocess
import sys

HEAVY = ("monai", "sklearn", "matplotlib", "onnxruntime", "lungxray.train", "lungxray.data.split")

SCRIPT = """
import json, sys
from lungxray.cli import main
try:
    main.main(["predict", sys.argv[1], "--no-overlay", "--out", sys.argv[2]], standalone_mode=False)
finally:
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"monai", "sklearn", "matplotlib",
          "onnxruntime"} or m in {"lungxray.train", "lungxray.data.split"})))
"""


def test_cold_predict_imports_no_heavy_module_it_does_not_use(sample_dir, tmp_path):
    image = sorted(sample_dir.glob("COVID/images/*.png"))[0]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(image), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "predictions.csv").is_file()  # the prediction really ran, with the shipped lung-only default
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY], loaded
