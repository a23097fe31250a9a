# Two entry points: `make demo` (train on the bundled sample, write a grid) and `make test`.
# Both create .venv on first use. TORCH picks the PyTorch build (the default is the tested one).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.gantool-installed

.PHONY: demo test test-fast lint bench browser docs clean

demo: $(STAMP)
	$(BIN)/gantool demo --out runs

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The edit loop: everything but the tests marked slow (Triton, export, crash and torchrun
# runs, the quality and benchmark runs, FID, megapixel presets, long renders); the full suite
# above is what CI runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Debian's Chromium, which the browser tests of gantool explore drive (tests/test_explore.py
# skips them without it); needs root. CI runs this before make test.
browser:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

lint: $(STAMP)
	$(BIN)/ruff check gantool tests benchmarks scripts docs

bench: $(STAMP)
	$(BIN)/python benchmarks/train_step.py

# The manual as a site in site/ (open site/index.html); any broken link, anchor or figure is an
# error. `$(BIN)/mkdocs serve` serves it with live reload.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[onnx,metrics,report,serve,fastpng,video,tensorboard,explore,ray,docs,dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs site
