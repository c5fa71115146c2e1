# Hidra: two commands on a fresh Debian machine with Swift 6.3 at /opt/swift (or on PATH):
#   make demo   runs hidra-run on the built-in demo graph
#   make test   runs every test (and checks formatting)
# Each installs the Debian packages it needs when they are missing.

SHELL := /bin/bash
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
APT_PACKAGES := libzmq3-dev libxxhash-dev liblz4-dev pkg-config
HIDRA := .build/debug/hidra-run
RELEASE_BENCH := .build/release/hidra-bench
PYTHON_VENV := .build/python-venv

.PHONY: setup build demo test test-python lint format reference bench

## setup: install the Debian packages Hidra builds against, if missing
setup:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

## build: compile hidra-run (debug)
build: setup
	$(SWIFT) build --product hidra-run

## demo: check the demo graph (graphs/demo.yaml), then run it for a few seconds
demo: build
	@echo "== hidra-run validate graphs/demo.yaml"
	@$(HIDRA) validate graphs/demo.yaml
	@echo; echo "== hidra-run plan graphs/demo.yaml"
	@$(HIDRA) plan graphs/demo.yaml
	@echo; echo "== hidra-run graphs/demo.yaml   (1000 frames of 1 MiB at 200/s; Ctrl-C drains)"
	@$(HIDRA) graphs/demo.yaml

## test: formatting, then every test
test: setup lint
	mkdir -p .build; $(SWIFT) build --build-tests 2>&1 | tee .build/test-build.log; \
	  status=$${PIPESTATUS[0]}; \
	  if grep -E "^/.*(Sources|Tests)/.*warning:" .build/test-build.log | grep -v "/.build/"; then \
	    echo "error: the build has warnings from our own code"; exit 1; fi; \
	  exit $$status
	$(SWIFT) test --skip-build
	$(MAKE) test-python

## test-python: the Python client (clients/python) and an OnDA-like monitor client (tests/onda)
##   against the built hidra-run, in a venv
test-python:
	@test -x $(HIDRA) || { echo "error: $(HIDRA) is not built: run 'make build' first"; exit 1; }
	@python3 -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing: python3-venv"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv; }
	@test -x $(PYTHON_VENV)/bin/python || python3 -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/python -m pip install -q --disable-pip-version-check ./clients/python pytest \
	  -r tests/onda/requirements.txt
	HIDRA_RUN=$(CURDIR)/$(HIDRA) $(PYTHON_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  clients/python/tests tests/onda

## lint: fail when a Swift file is not formatted per .swift-format
lint:
	$(SWIFT) format lint --strict --recursive --parallel Sources Tests bench Package.swift

## format: rewrite Swift files per .swift-format
format:
	$(SWIFT) format --in-place --recursive --parallel Sources Tests bench Package.swift

## reference: regenerate docs/graph-reference.md from the option declarations
reference: build
	$(HIDRA) nodes --format markdown > docs/graph-reference.md

## bench: benchmarks, each a ratio to a baseline measured in the same run
bench: setup
	$(SWIFT) build -c release --product hidra-bench
	$(RELEASE_BENCH)
