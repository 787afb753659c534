# Two commands on a fresh machine (Python 3.11, pip; nothing else):
#   make demo   install everything, run the main job on embedded defaults, print the report path
#   make test   install everything, run lint, types and the test suite
# Everything installs into ./.venv from PyPI; nothing is downloaded at run time. The one system
# package, Debian's chromium (the backtest report's browser test), installs here when we are root
# with apt-get (CI); elsewhere the recipe says how, and that test fails naming the command.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench install clean

CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,datasets,fast]'
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: $(CHROMIUM) missing; the report's browser test needs it: sudo apt-get install chromium"; \
	  fi; \
	fi
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

# The pure fast lane: tests/unit (no broker, store, server, subprocess or network; its conftest
# fails a test that tries), without the few tests marked slow. Nothing to list: a test is in the
# lane by living in tests/unit.
test-fast: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests/unit

bench: $(STAMP)
	$(BIN)/python bench/bench_flow.py
	$(BIN)/python bench/bench_gpt.py
	$(BIN)/python bench/bench_orders.py
	$(BIN)/python bench/bench_news.py
	$(BIN)/python bench/bench_replay.py
	$(BIN)/python bench/bench_replay_kafka.py
	$(BIN)/python bench/bench_backtest_flow.py
	$(BIN)/python bench/bench_stream.py
	$(BIN)/pip install --quiet -e '.[bench]'  # vectorbt, to compare the vectorised evaluator
	$(BIN)/python bench/bench_vector.py

clean:
	rm -rf $(VENV) var
