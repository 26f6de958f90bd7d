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
# The PIV applet's interop tests (tests/emulator/piv/) run the real programs: opensc +
# opensc-pkcs11 (opensc-tool, pkcs11-tool, opensc-pkcs11.so), yubico-piv-tool and ykcs11
# (Yubico's C tool and PKCS#11 module), libengine-pkcs11-openssl (OpenSSL's pkcs11 engine),
# openssh-server + openssh-client (ssh login with the PIV key to a private sshd).
APT_PACKAGES := oathtool pcscd vsmartcard-vpcd usbip swig libpcsclite-dev pcsc-tools \
                postgresql udev python3-venv procps \
                opensc opensc-pkcs11 yubico-piv-tool ykcs11 libengine-pkcs11-openssl \
                openssh-server openssh-client
NODE_DIR := tests/fob/node

.PHONY: all deps demo test lint bench clean

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

deps: $(STAMPS)/venv $(STAMPS)/node

demo: deps
	$(VENV)/bin/hwtoken demo

test: deps
	$(VENV)/bin/ruff check src tests benchmarks firmware
	$(PY) -m pytest -q

lint: deps
	$(VENV)/bin/ruff check src tests benchmarks firmware

bench: deps
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(STAMPS) $(VENV) $(NODE_DIR)/node_modules
