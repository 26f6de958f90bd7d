# hwtoken — `make demo` and `make test` work on a fresh Debian machine (as root, or with sudo).
# Stamps under .stamps/ make re-runs fast: nothing is reinstalled unless its inputs change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# System packages: oathtool (reference codes), pcscd + vsmartcard-vpcd (PC/SC virtual card),
# usbip (the kernel's USB/IP tools), swig + libpcsclite-dev (to build pyscard), postgresql
# (shared inventory tests), nodejs + npm (MicroPython WebAssembly interpreter), udev (udevadm).
APT_PACKAGES := oathtool pcscd vsmartcard-vpcd usbip swig libpcsclite-dev pcsc-tools \
                postgresql udev python3-venv procps
NODE_DIR := tests/fob/node
# python-fido2's own hardware-key test suite (tests/device/ of its sdist, for the installed
# fido2 version): tests/emulator/fido/test_fido2_device_suite.py runs it on a virtual key.
FIDO2_SDIST_DIR := .cache/fido2-sdist

.PHONY: all deps demo test lint bench clean fido2-device-tests

all: test

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml $(STAMPS)/apt
	@mkdir -p $(STAMPS)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,test]'
	@touch $@

$(STAMPS)/node: $(NODE_DIR)/package.json $(STAMPS)/apt
	@mkdir -p $(STAMPS)
	cd $(NODE_DIR) && npm install --no-audit --no-fund --silent
	@touch $@

$(STAMPS)/fido2-sdist: $(STAMPS)/venv
	@mkdir -p $(STAMPS) $(FIDO2_SDIST_DIR)
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(FIDO2_SDIST_DIR) \
	  "fido2==$$($(PY) -c 'import importlib.metadata as m; print(m.version("fido2"))')"
	@touch $@

deps: $(STAMPS)/venv $(STAMPS)/node $(STAMPS)/fido2-sdist

demo: deps
	$(VENV)/bin/hwtoken demo

test: deps
	$(VENV)/bin/ruff check src tests benchmarks firmware
	$(PY) -m pytest -q

# the whole of python-fido2's tests/device on a `latest` virtual key, with its summary
fido2-device-tests: deps
	$(PY) -m pytest -q tests/emulator/fido/test_fido2_device_suite.py -s

lint: deps
	$(VENV)/bin/ruff check src tests benchmarks firmware

bench: deps
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(STAMPS) $(VENV) $(NODE_DIR)/node_modules .cache
