# `make train`, `make test` and `make bench` install what they need on first use (a virtual environment in .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install train test bench clean

# torch first and pinned: 2.13.0 is the CPU build on this machine's disk; an open requirement
# would pull a multi-GB CUDA build. Everything else then finds torch already satisfied.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) -m sepgan.train experiment=gan

test: $(STAMP)
	$(PY) -m pytest -q --durations=10

# Speed figures (several minutes on 2 cores): a table, and bench.json. Uses every core on purpose.
bench: $(STAMP)
	$(PY) -m sepgan.commands.bench

clean:
	rm -rf logs outputs .pytest_cache
