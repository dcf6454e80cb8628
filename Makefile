# The two commands of the README: `make demo` and `make test`. Both build .venv on first use
# (and again whenever pyproject.toml changes), so a fresh clone needs only Python >= 3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NODE_CSMS := tests/peers/node_csms
NODE_STAMP := $(NODE_CSMS)/node_modules/.installed-stamp
# The simulated module family of `make demo`: quectel (cellular) or simplelink (Wi-Fi).
MODULE ?= quectel
BENCHES := serial_throughput roundtrip outbox firmware reconnect composite_schedule boot soak

.PHONY: demo test lint typecheck unit bench fuzz clean systemd-tool

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The test CSMS on ocpp-rpc, installed exactly as locked (needs the machine's Node.js >= 18).
$(NODE_STAMP): $(NODE_CSMS)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js >= 18) is needed for the test CSMS"; exit 1; }
	cd $(NODE_CSMS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# systemd-analyze, for the unit-file tests: Debian's systemd package (only the tool is used;
# nothing is started). Installed when missing, with sudo unless we are root.
systemd-tool:
	@command -v systemd-analyze >/dev/null || { \
	  echo "installing Debian's systemd package for systemd-analyze"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends systemd; }

demo: $(STAMP)
	$(BIN)/chargepoint demo --module $(MODULE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(NODE_STAMP) systemd-tool
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# The property tests with a long, fresh search (tests/conftest.py, profile "fuzz").
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -m property -p no:cacheprovider

bench: $(STAMP)
	@for b in $(BENCHES); do $(BIN)/python -m bench.$$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(NODE_CSMS)/node_modules
