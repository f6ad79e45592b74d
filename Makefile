# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared/data
WORKDIR ?= work/demo

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
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
