# Two commands do all set-up on a fresh Linux machine with Python 3.10+ and pip:
#   make demo   installs imssa and runs the main job on the embedded dataset
#   make test   installs imssa, its test needs and aihwkit (built from source), then runs the tests
# PYTHON picks the interpreter (e.g. PYTHON=venv/bin/python, no need to activate the venv);
# IMSSA_TORCH=cpu|cuda picks the torch build when torch is not installed yet (scripts/install.sh).
PYTHON ?= python3

.PHONY: demo test test-fast install install-test lint notebook

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

install-test:
	PYTHON=$(PYTHON) bash scripts/install.sh --aihwkit

demo: install
	$(PYTHON) -m imssa demo --out runs/demo

test: install-test
	$(PYTHON) -m ruff check imssa tests benchmarks
	$(PYTHON) -m pytest -q tests

# the suite without the tests marked slow (fault injection, end-to-end pipelines)
test-fast:
	$(PYTHON) -m pytest -q -m "not slow" tests

# runs the notebooks top to bottom (as `jupyter execute`; interactively: jupyter lab notebooks/)
notebook:
	$(PYTHON) -c "import sys; from nbclient.cli import main; sys.exit(main())" \
		notebooks/conductance_maps.ipynb notebooks/analog_ssm.ipynb notebooks/codesign.ipynb

lint:
	$(PYTHON) -m ruff check imssa tests benchmarks
