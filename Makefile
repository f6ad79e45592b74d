# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared/data
WORKDIR ?= work/demo

.PHONY: install demo test lint clean

# torch comes first, alone (its dependencies come from PyPI with the rest), from the PyTorch CPU wheel index:
# PyPI's Linux torch is the multi-GB CUDA build. The project install keeps it.
# CUDA: make install TORCH_INDEX= (PyPI's build) or TORCH_INDEX=<a CUDA wheel index of PyTorch>.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC := $(shell grep -o '"torch==[^"]*"' pyproject.toml)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps $(TORCH_SPEC) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/fineforge data build --input "$(SHARED)/warc" --workdir "$(WORKDIR)"

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check flows tasks model tests benchmarks testkit setup.py

clean:
	rm -rf $(VENV) work
