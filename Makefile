# The two commands: `make run` (a local cluster) and `make test` (lint, types, tests).
# Each bootstraps what it needs and is quick when everything is already there.

SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PG_BIN ?= /usr/lib/postgresql/15/bin
STAMP := $(VENV)/.stamp
EXT_SOURCES := $(wildcard pyx/*.pyx pyx/*.pxd pyx/*.pxi csrc/*.h csrc/*.c) setup.py
PYTEST_ARGS ?=

.PHONY: run stop status test lint typecheck unit bootstrap system-deps venv ext bench clean

run: bootstrap
	$(VENV)/bin/multigres cluster start
	@echo
	@echo "Connect: psql -h 127.0.0.1 -p 15432 -U postgres  (password: postgres)"

stop:
	$(VENV)/bin/multigres cluster stop

status:
	$(VENV)/bin/multigres cluster status

test: bootstrap
	$(VENV)/bin/ruff check multigres tests bench setup.py bench/pgbench_compare bench/sharded_point
	$(VENV)/bin/mypy multigres tests bench bench/sharded_point
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bootstrap: system-deps venv ext

# Debian packages: etcd and the Postgres 15 server. Installed only when missing.
system-deps:
	@missing=""; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	[ -x $(PG_BIN)/postgres ] || missing="$$missing postgresql-15"; \
	command -v psql >/dev/null 2>&1 || missing="$$missing postgresql-client-15"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(VPY) ] || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel 'Cython>=3.1,<3.3'
	$(VPY) -m pip install -q -e '.[test]' --no-build-isolation
	@touch $(STAMP)

# Rebuild the compiled extensions in place only when their sources changed.
ext: $(VENV)/.ext-stamp

$(VENV)/.ext-stamp: $(STAMP) $(EXT_SOURCES)
	$(VPY) setup.py -q build_ext --inplace
	@touch $@

bench: bootstrap
	$(VENV)/bin/pytest bench --benchmark-enable -p no:randomly $(PYTEST_ARGS)

clean:
	rm -rf build multigres/_cy/*.so multigres/_cy/*.c pyx/*.c $(VENV)
