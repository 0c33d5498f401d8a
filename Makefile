# remotecal: `make test` and `make demo` work on a fresh Debian/Ubuntu machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := mosquitto mosquitto-clients influxdb victoria-metrics socat chromium fonts-dejavu-core openssl mbpoll xmlsec1 poppler-utils
# Executables that tell whether each Debian package above is installed.
NEEDED_BINARIES := /usr/sbin/mosquitto /usr/bin/mosquitto_pub /usr/bin/influxd /usr/bin/victoria-metrics /usr/bin/socat /usr/bin/chromium /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/bin/openssl /usr/bin/mbpoll /usr/bin/xmlsec1 /usr/bin/pdftoppm

.PHONY: test lint typecheck unit venv python-venv system-packages demo bench clean

# Debian and Ubuntu ship Python's venv without ensurepip until python3-venv is installed.
python-venv:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv ($(PYTHON) -m venv needs it)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }

$(VENV)/.installed: pyproject.toml | python-venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,test]'
	touch $@

venv: $(VENV)/.installed

# `make bench` only: the benchmarks' baselines (pandas) on top of the test install.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[all,test,bench]'
	touch $@

# The integration tests start these servers themselves; they are only installed here.
system-packages:
	@missing=""; for b in $(NEEDED_BINARIES); do [ -e "$$b" ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages (missing:$$missing)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	fi

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

# The fast tier: no server, no system package, nothing marked slow, on every CPU (pytest-xdist);
# well under a minute.  `make test` runs everything, the slow ones and the servers' too.
unit: venv lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider -m "not integration and not slow" -n auto

# Everything: ruff, mypy, the unit tier and the integration tier against real servers.
test: venv system-packages lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider

demo: venv
	$(VENV)/bin/remotecal demo --out out/demo

bench: venv system-packages $(VENV)/.bench-installed
	$(PY) -m bench --out bench/RESULTS.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
