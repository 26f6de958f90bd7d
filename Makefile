# hwtoken — `make demo` and `make test` work on a fresh Debian machine (as root, or with sudo).
# Stamps under .stamps/ make re-runs fast: nothing is reinstalled unless its inputs change.

PYTHON ?= python3
VENV   := .venv
# privacyIDEA from PyPI for the export interop tests (tests/provision/test_provision_privacyidea.py),
# in a venv of its own: its dependencies must not mix with hwtoken's
PI_VENV := .venv-privacyidea
PI_REQS := tests/provision/privacyidea_requirements.txt
PY     := $(VENV)/bin/python
STAMPS := .stamps
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# System packages, each with the part of the project that needs it (Debian 12 names).
APT_PACKAGES :=
APT_PACKAGES += python3-venv procps         # the project venv; ps/pkill in process tests
APT_PACKAGES += oathtool                    # reference HOTP/TOTP codes (tests/test_otp.py ...)
APT_PACKAGES += pcscd vsmartcard-vpcd pcsc-tools  # PC/SC: a private pcscd with the vpcd driver
APT_PACKAGES += libccid                     # PC/SC: pcscd's CCID driver reaches the key's USB CCID interface (umockdev)
APT_PACKAGES += swig libpcsclite-dev        # to build pyscard (no Linux wheel)
APT_PACKAGES += gcc libc6-dev python3-dev   # to build pyscard: a C compiler, libc's and Python's headers
APT_PACKAGES += usbip                       # the kernel's USB/IP tools (usbip list -r)
APT_PACKAGES += postgresql                  # shared provisioning inventory tests
APT_PACKAGES += udev                        # udevadm (udev rules checks)
APT_PACKAGES += umockdev                    # libumockdev-preload: emulate run (local USB devices)
APT_PACKAGES += yubikey-personalization     # ykinfo, ykchalresp, ykpersonalize over libusb (umockdev tests)
APT_PACKAGES += fido2-tools                 # libfido2's fido2-token/-cred/-assert vs the virtual key
APT_PACKAGES += openssh-client openssh-server  # ssh-keygen -t *-sk; ssh logins (sk and PIV keys) to a private sshd
APT_PACKAGES += libpam-u2f pamu2fcfg pamtester  # a PAM login through pam_u2f
APT_PACKAGES += opensc opensc-pkcs11       # PIV: opensc-tool, pkcs11-tool, opensc-pkcs11.so
APT_PACKAGES += yubico-piv-tool ykcs11      # PIV: Yubico's C tool and PKCS#11 module
APT_PACKAGES += libengine-pkcs11-openssl    # PIV: OpenSSL's pkcs11 engine signs with the key
APT_PACKAGES += gnupg gpg-agent scdaemon    # OpenPGP: gpg, gpg-agent (and its SSH support), scdaemon over PC/SC
APT_PACKAGES += chromium chromium-driver     # WebAuthn in headless Chromium (Selenium) vs the virtual key
APT_PACKAGES += firefox-esr                 # WebAuthn in headless Firefox (Marionette) vs the virtual key
NODE_DIR := tests/fob/node
# The other Firefox ESR of Debian 12 (main suite 140, security suite 153: whichever is not
# installed), unpacked from its package with dpkg -x: the browser tests run on both
# (tests/browser/browser_versions.py).
FIREFOX_ESR_DIR := .cache/firefox-esr
# tests/test_package.py installs hwtoken's wheel into clean venvs the way the README says
# and runs the documented examples there, with --no-index: every wheel those venvs need
# (hwtoken's browser extra, pytest and the plugins it must live beside) and the build
# backend (python -m build's isolated environment) come from here.
WHEELHOUSE := .cache/wheelhouse
WHEELHOUSE_EXTRA := pytest pytest-playwright pytest-selenium 'setuptools>=77'
# python-fido2's own hardware-key test suite (tests/device/ of its sdist, for the installed
# fido2 version): tests/emulator/applets/fido/test_fido2_device_suite.py runs it on a virtual key.
FIDO2_SDIST_DIR := .cache/fido2-sdist
# Yubico's own device tests (tests/device of the yubikey-manager sdist) on virtual keys:
# `make yubico-suite` (not part of `make test`), with ykman pinned in a venv of its own.
YKMAN_VERSION   := 5.9.2
YKMAN_VENV      := .venv-ykman
YKMAN_SDIST_DIR := .cache/ykman-sdist
YUBICO_PROFILES ?= yubikey-5 latest
YUBICO_SUITE_ARGS ?=

.PHONY: all deps demo test test-slow lint bench mutate clean fido2-device-tests yubico-suite dist

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

$(STAMPS)/privacyidea: $(PI_REQS) $(STAMPS)/apt
	@mkdir -p $(STAMPS)
	@[ -x $(PI_VENV)/bin/python ] || $(PYTHON) -m venv $(PI_VENV)
	$(PI_VENV)/bin/python -m pip install -q --only-binary=:all: -r $(PI_REQS)
	@touch $@

$(STAMPS)/fido2-sdist: $(STAMPS)/venv
	@mkdir -p $(STAMPS) $(FIDO2_SDIST_DIR)
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(FIDO2_SDIST_DIR) \
	  "fido2==$$($(PY) -c 'import importlib.metadata as m; print(m.version("fido2"))')"
	@touch $@

$(STAMPS)/ykman-suite: Makefile $(STAMPS)/venv
	@mkdir -p $(STAMPS) $(YKMAN_SDIST_DIR)
	@[ -x $(YKMAN_VENV)/bin/python ] || $(PYTHON) -m venv $(YKMAN_VENV)
	$(YKMAN_VENV)/bin/python -m pip install -q "yubikey-manager==$(YKMAN_VERSION)" \
	  "pytest>=8,<10" "makefun>=1.9.5,<2"
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(YKMAN_SDIST_DIR) \
	  "yubikey-manager==$(YKMAN_VERSION)"
	tar -xzf $(YKMAN_SDIST_DIR)/yubikey_manager-$(YKMAN_VERSION).tar.gz -C $(YKMAN_SDIST_DIR)
	@touch $@

# Yubico's device tests, module by module (a fresh key each) and as one session, per profile
yubico-suite: deps $(STAMPS)/ykman-suite
	@for p in $(YUBICO_PROFILES); do \
	  $(PY) tools/yubico-suite --profile $$p $(YUBICO_SUITE_ARGS) || status=1; \
	  $(PY) tools/yubico-suite --profile $$p --one-session $(YUBICO_SUITE_ARGS) || status=1; \
	done; exit $${status:-0}

$(STAMPS)/firefox-esr: tools/fetch-firefox-esr $(STAMPS)/apt
	@mkdir -p $(STAMPS)
	SUDO=$(SUDO) tools/fetch-firefox-esr $(FIREFOX_ESR_DIR)
	@touch $@

$(STAMPS)/wheelhouse: pyproject.toml $(STAMPS)/venv
	@mkdir -p $(STAMPS) $(WHEELHOUSE)
	$(PY) -m pip download -q -d $(WHEELHOUSE) '.[browser]' $(WHEELHOUSE_EXTRA)
	@touch $@

deps: $(STAMPS)/venv $(STAMPS)/node $(STAMPS)/privacyidea $(STAMPS)/fido2-sdist \
      $(STAMPS)/firefox-esr $(STAMPS)/wheelhouse

# An sdist and a wheel in dist/ (the wheel is built from the sdist, which proves the sdist
# complete): what the README installs until hwtoken is on PyPI
dist: $(STAMPS)/venv
	rm -rf dist
	$(PY) -m build --outdir dist .

demo: deps
	$(VENV)/bin/hwtoken demo

# The suite but its slowest end-to-end tests (@pytest.mark.slow: real browsers, provisioning
# stations with keys plugged in and out, the fob's REPL, python-fido2's device tests, ...),
# which `make test-slow` runs one at a time; CI (.ci/run) runs both. `make test` runs a
# worker per core (up to 4; pytest-xdist), each test file whole on one worker.
TEST_WORKERS ?= -n auto --maxprocesses 4 --dist loadfile
test: deps
	$(VENV)/bin/ruff check src tests benchmarks firmware mutation tools/fresh-debian-check tools/yubico-suite
	$(PY) -m pytest -q -m "not slow" $(TEST_WORKERS)

test-slow: deps
	$(PY) -m pytest -q -m slow

# the whole of python-fido2's tests/device on a `latest` virtual key, and its bio enrollment tests
# on a `yubikey-bio` one, with their summaries
fido2-device-tests: deps
	$(PY) -m pytest -q tests/emulator/applets/fido/test_fido2_device_suite.py -s

lint: deps
	$(VENV)/bin/ruff check src tests benchmarks firmware mutation tools/fresh-debian-check tools/yubico-suite

# Mutation testing (slow, CPU-heavy; not part of `make test`): each module named in
# pyproject.toml's [tool.mutmut] in turn, or only MODULES="hwtoken.otp ..."; JOBS mutants at
# once; SURVIVORS=1 runs again only what the last run did not kill. Prints the score per
# module and every surviving mutant (mutation/run.py).
MODULES   ?=
JOBS      ?= 1
SURVIVORS ?=
$(STAMPS)/mutate: pyproject.toml $(STAMPS)/venv
	$(PY) -m pip install -q -e '.[mutate]'
	@touch $@

mutate: deps $(STAMPS)/mutate
	$(PY) mutation/run.py --jobs $(JOBS) $(if $(SURVIVORS),--survivors) $(MODULES)

bench: deps
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(STAMPS) $(VENV) $(PI_VENV) $(YKMAN_VENV) $(NODE_DIR)/node_modules .cache mutants .mutate dist
