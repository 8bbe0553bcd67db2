# Two entry points, each doing all the set-up on a fresh machine:
#   make demo   seeds a local registry and filesystem store with real JARs and runs `parity-verifier check`
#   make test   runs the whole test suite against the real registry, PostgreSQL and promtool
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo serve test lint generate clean bench

$(BIN)/parity-verifier: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/parity-verifier
	./scripts/install-system-packages

demo: setup
	$(BIN)/python scripts/demo.py

serve: setup
	$(BIN)/python scripts/demo.py --serve

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check verifier tests scripts bench

generate: setup
	$(BIN)/parity-verifier generate --out .

bench: setup
	$(BIN)/python bench/hash_throughput.py

clean:
	rm -rf $(VENV) demo .pytest_cache
