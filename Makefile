# Two commands on a fresh machine (Python 3.11, pip; nothing else):
#   make demo   install everything, run the main job on embedded defaults, print the report path
#   make test   install everything, run lint, types and the test suite
# Everything installs into ./.venv from PyPI; nothing is downloaded at run time.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,datasets]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stratflow demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The pure fast lane: decision logic in models/ only (no broker, store, server or subprocess).
FAST_TESTS := accounting bars circuit_breaker crossing desk desk_execution features \
	fill_holdback gpt_cost gpt_prompt ingest_properties matching merge prompt_lookalikes router \
	strategy_spec triggers parsing news_digest strategy_takeover review_loop desk_components \
	desk_driver type_names
test-fast: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(patsubst %,tests/test_%.py,$(FAST_TESTS))

bench: $(STAMP)
	$(BIN)/python bench/bench_flow.py
	$(BIN)/python bench/bench_gpt.py
	$(BIN)/python bench/bench_orders.py
	$(BIN)/python bench/bench_news.py
	$(BIN)/python bench/bench_replay.py

clean:
	rm -rf $(VENV) var
