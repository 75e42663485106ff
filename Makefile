# Two entry points for newcomers: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is installed first and pinned: 2.13.0 is a CPU build that pip finds on local disk here;
# an unpinned torch would pull a multi-GB CUDA build. Elsewhere, name the index of the build you want:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH := torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test venv wheel clean train-default train-encoder train-encoder-128

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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

# The shipped classifier's recipe (docs/RESULTS.md): the lung-only classifier started from the small-input lung
# encoder that ships with the package (weights/lung-encoder-128.safetensors). One step; train-encoder, then
# train-encoder-128, remake that encoder.
DATA ?= ../shared/data/covid19-radiography
SPLIT ?= configs/splits/covid19-radiography-v2-seed0.csv
QUEX ?= ../shared/data/covid-qu-ex-lungs
train-default: $(STAMP)
	$(VENV)/bin/lungxray train --data $(DATA) --split $(SPLIT) --config configs/lungs-enc128.toml --out runs/lungs-enc128

# The shipped lung encoders, remade into runs/ (the shipped files are left alone: the default classifier records the
# sha256 of the one it started from). To train from a remade one: --pretrained runs/lung-encoder.safetensors.
# train-encoder: a lung U-Net on COVID-QU-Ex Train and the split's Viral Pneumonia training pairs, the split's
# validation and test images and their copies left out (docs/RESULTS.md, issue 15, session 10). Its U-Net,
# runs/lung-unet-clean/best.{safetensors,json}, is also what ships as the segmenter, weights/lung-unet (session 14).
train-encoder: $(STAMP)
	$(VENV)/bin/lungxray segment train --data $(QUEX)/Train --holdout-data "$(DATA)/Viral Pneumonia" \
	    --holdout-frac 0.2 --val $(QUEX)/Val --exclude-split $(SPLIT) --exclude-split-data $(DATA) --epochs 10 \
	    --out runs/lung-unet-clean
	$(VENV)/bin/lungxray segment export-encoder runs/lung-unet-clean runs/lung-encoder.safetensors

# train-encoder-128 (the shipped default's and the quick recipe's start; after train-encoder): the same pairs plus the split's COVID and
# Normal training images with masks predicted by train-encoder's U-Net, at 128 px (issue 15, session 11).
train-encoder-128: $(STAMP)
	$(PY) tools/pseudo_masks.py --split $(SPLIT) --data $(DATA) --label COVID --label Normal \
	    --weights runs/lung-unet-clean --out runs/pseudo-train
	$(VENV)/bin/lungxray segment train --data $(QUEX)/Train --data runs/pseudo-train \
	    --holdout-data "$(DATA)/Viral Pneumonia" --holdout-frac 0.2 --val $(QUEX)/Val --exclude-split $(SPLIT) \
	    --exclude-split-data $(DATA) --image-size 128 --batch-size 16 --epochs 8 --out runs/lung-unet-pseudo
	$(VENV)/bin/lungxray segment export-encoder runs/lung-unet-pseudo runs/lung-encoder-128.safetensors

clean:
	rm -rf $(VENV) runs test_results .pytest_cache build dist
