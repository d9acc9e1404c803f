# Two commands from a fresh clone (README.md):
#   make demo    set up .venv if it is missing or stale, then run the demo into demo/
#   make test    set up .venv if it is missing or stale, then run the tests
# ".venv is stale" means: its python is gone, or pyproject.toml, this Makefile or the torch pin
# changed since it was set up. Managing your own environment? Use the plain pip line in README.md.
# On a GPU machine: make test TORCH=torch (the torch build for your CUDA instead of the CPU pin).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= all,test
DEMO_OUT ?= demo
PYTEST_ARGS ?=

comma := ,
BIN := $(VENV)/bin
STAMP := $(VENV)/.liftdata-setup-$(subst =,_,$(subst /,_,$(TORCH)))-$(subst $(comma),_,$(EXTRAS))

.PHONY: setup demo test

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv --clear $(VENV)

$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.liftdata-setup-*
	touch $@

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/liftdata demo --out $(DEMO_OUT)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)
