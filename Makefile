# Two entry points for newcomers: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is installed first and pinned: 2.13.0 is a CPU build that pip finds on local disk here;
# an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test venv wheel clean train-default

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lungxray demo

test: $(STAMP)
	$(PY) -m pytest -q

# A wheel with the shipped weights, built from this tree with the venv's setuptools (no download).
wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps --no-build-isolation --quiet -w dist .
	@ls dist/lungxray-*.whl

# The shipped classifier's recipe, both steps (docs/RESULTS.md): a lung U-Net pretrained on the Viral Pneumonia
# masks of the split's training images only, then the lung-only classifier started from its encoder.
DATA ?= ../shared/data/covid19-radiography
SPLIT ?= configs/splits/covid19-radiography-v2-seed0.csv
train-default: $(STAMP)
	$(VENV)/bin/lungxray segment train --holdout-data "$(DATA)/Viral Pneumonia" --holdout-frac 0.2 \
	    --exclude-split $(SPLIT) --epochs 10 --out runs/lung-unet-pretrain
	$(VENV)/bin/lungxray train --data $(DATA) --split $(SPLIT) --config configs/lungs-enc.toml --out runs/lungs-enc

clean:
	rm -rf $(VENV) runs test_results .pytest_cache build dist
