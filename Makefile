# One script per job, shared by people and CI. Every target makes .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
BENCH_STAMP := $(VENV)/.installed-bench

# The 20 Newsgroups data: the shared offline copy beside the project when there is one,
# else scikit-learn downloads it to its usual place.
SHARED_DATA := $(abspath ../shared/data/scikit_learn_data)
ifneq ($(wildcard $(SHARED_DATA)/20news-bydate_py3.pkz),)
export SCIKIT_LEARN_DATA ?= $(SHARED_DATA)
endif

NEWS_MODEL := examples/newsgroups/model.pickle
NEWS_BUNDLE := bundles/news
DEMO_POST := Did that FAQ ever get changed to define strong atheists as those who believe there is no God?

.PHONY: help install demo test check bench clean

help:
	@echo "make demo    train the 20 Newsgroups example, package it, invoke it and serve it (about 1 min)"
	@echo "make test    run every test (about 10 min, installs the test tools first)"
	@echo "make check   ruff and mypy (strict) on src/"
	@echo "make bench   benchmarks (see docs/performance.md)"

install: $(STAMP)

# uv installs in seconds and precompiles bytecode (without it, every cold start
# recompiles scikit-learn); pip is the fallback where uv cannot be installed. An
# editable install leaves lambdaserve's own modules uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set nothing ever writes them: compileall does, once
# (0.1 s off every command's start, and off every INIT).
define install_extras
	$(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -m pip install --quiet --disable-pip-version-check uv; then \
	    $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -e '.[$(1)]'; \
	else \
	    $(BIN)/python -m pip install --disable-pip-version-check -e '.[$(1)]'; \
	fi
	$(BIN)/python -m compileall -q src
endef

# make test: everything the tests use (moto, Playwright, Flask, ...).
$(STAMP): pyproject.toml
	$(call install_extras,dev)
	touch $@

# make demo: the CLI and scikit-learn to train the example, nothing else (the dev
# install, when there is one, already holds it).
$(DEMO_STAMP): pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then touch $@; exit 0; fi; \
	$(MAKE) --no-print-directory demo-install
	touch $@

.PHONY: demo-install
demo-install:
	$(call install_extras,demo)

$(NEWS_MODEL): examples/newsgroups/train.py | $(DEMO_STAMP)
	$(BIN)/python examples/newsgroups/train.py -o $@

# Trains the example if needed, checks one invocation, then serves it until Ctrl-C
# (PORT=8001 make demo to use another port).
PORT ?= 8000
demo: $(NEWS_MODEL)
	@$(BIN)/python -m compileall -q src
	$(BIN)/lambdaserve package $(NEWS_MODEL) --sample '["the space shuttle launch"]' -o $(NEWS_BUNDLE)
	$(BIN)/lambdaserve invoke $(NEWS_BUNDLE) --data '["$(DEMO_POST)"]'
	$(BIN)/lambdaserve serve $(NEWS_BUNDLE) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

# The benchmarks' own extra (LitServe, the batching server they compare with), kept out
# of dev so that `make test` never installs it.
$(BENCH_STAMP): $(STAMP)
	@if [ -x $(BIN)/uv ]; then \
	    $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -e '.[dev,bench]'; \
	else \
	    $(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,bench]'; \
	fi
	touch $@

# The server benchmarks drive load with wrk (Debian/Ubuntu package; sudo only when not root).
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk; }
	$(BIN)/python -m pytest benchmarks -m perf -p no:cacheprovider -s

clean:
	rm -rf $(VENV) bundles .lambdaserve .pytest_cache .mypy_cache .ruff_cache
