# Two commands do all set-up on a fresh Linux machine with Python 3.10+ and pip:
#   make demo   installs imssa and runs the main job on the embedded dataset
#   make test   installs imssa, its test needs and aihwkit (built from source), then runs the tests
PYTHON ?= python3

.PHONY: demo test install install-test lint

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

install-test:
	PYTHON=$(PYTHON) bash scripts/install.sh --aihwkit

demo: install
	$(PYTHON) -m imssa demo --out runs/demo

test: install-test
	$(PYTHON) -m ruff check imssa tests benchmarks
	$(PYTHON) -m pytest -q tests

lint:
	$(PYTHON) -m ruff check imssa tests benchmarks
