# Paddock: `make run` and `make test` each do all of their own set-up on a fresh
# Debian/Ubuntu machine: system packages (installed with apt-get when run as root),
# uv and the Python environment from uv.lock, front-end assets from npm.
# Every step leaves a stamp file, so a second run goes straight to the point.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
MANAGE := $(VENV)/bin/python manage.py
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

# uv uses the system Python (no interpreter downloads) and the venv in .venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_LINK_MODE := copy
# The development app (devtools/: runstack, seed_demo, testbed, embedded_redis) is on for
# every target here; production settings (docker-compose.yml) leave it out.
export PADDOCK_DEV_TOOLS ?= true

UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
PY_STAMP := $(VENV)/.paddock-synced
NPM_STAMP := node_modules/.paddock-ci
VENDOR_STAMP := static/vendor/.paddock-vendor

.PHONY: help run test test-system lint bench setup setup-test system system-browser \
	python assets clean image rootfs testbed testbed-down bench-provision \
	bench-collector bench-history bench-http bench-ws bench-placement bench-migration bench-balance \
	bench-backup

help:
	@echo "make run    set up, migrate, seed the demo and run the panel (http://$(HOST):$(PORT)/)"
	@echo "make test   set up and run the test suite (PYTEST_ARGS='-k api' to select)"
	@echo "make test-system  the real-host suite: libvirtd + QEMU testbed (root)"
	@echo "make image  build the tiny guest image into var/images (Debian packages only)"
	@echo "make rootfs build the tiny container template (rootfs tarball) into var/images"
	@echo "make testbed [HOSTS=2] [CONTAINERS=1]  hypervisor hosts in network namespaces (root); testbed-down"
	@echo "make lint   ruff check, ruff format --check and mypy"
	@echo "make bench  API list benchmark with 10,000 servers (bench/api_list.py)"
	@echo "make bench-collector  one stats collector pass over 1,000 test-driver guests"
	@echo "make bench-history  one server's usage charts with 1,000 servers' history"
	@echo "make bench-http  the API under 1/10/50 connections through the make-run server (wrk)"
	@echo "make bench-ws  WebSocket fan-out: 100, 500, 2,000 clients at a sample a second"
	@echo "make bench-placement  placement with 1,000 hosts and 50,000 servers vs the old algorithm"
	@echo "make bench-migration  live migration of a hot guest, Paddock vs plain virsh migrate (root)"
	@echo "make bench-balance  the balancer's planner over a 24-hour load trace (20 hosts, 300 servers)"
	@echo "make bench-provision  API request to ready line: VM vs qemu-img + virsh, container vs lxc-start (root)"
	@echo "make bench-backup  full and incremental backup of a 2 GiB disk vs qemu-img convert (root)"
	@echo "make clean  remove the tools, the venv, node_modules and the stamps (keeps var/)"

# --- set-up ----------------------------------------------------------------------------

system:
	@scripts/system-packages.sh

system-browser:
	@scripts/system-packages.sh --browser

$(UV_STAMP):
	@echo "Installing uv $(UV_VERSION) into $(TOOLS)/"
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@touch $@

# libvirt-python is built from source here, hence the system packages first.
$(PY_STAMP): uv.lock pyproject.toml $(UV_STAMP) | system
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

python: $(PY_STAMP)

$(NPM_STAMP): package.json package-lock.json | system
	npm ci --no-audit --no-fund
	@touch $@

# Copy bootstrap, bootstrap-icons, htmx and uPlot from node_modules into static/vendor/
# (package.json's "vendor" script, scripts/vendor.mjs; npm ci runs it as postinstall too).
$(VENDOR_STAMP): $(NPM_STAMP) scripts/vendor.mjs
	npm run --silent vendor
	@touch $@

assets: $(VENDOR_STAMP)

setup: python assets

setup-test: system-browser setup

# --- run -------------------------------------------------------------------------------

# Without SECRET_KEY (in the environment or .env) a random one is written into .env.
# Without REDIS_URL, runstack starts the embedded Redis; without DATABASE_URL, SQLite.
# As root, libvirtd and QEMU are installed when missing (unless PADDOCK_LOCAL_HYPERVISOR
# is off, here or in .env) and the demo makes real guests on the local qemu:///system
# (testbed/local.py); a failed install only means the demo stays on the test driver.
LOCAL_HYPERVISOR = $(or $(PADDOCK_LOCAL_HYPERVISOR),$(lastword $(shell \
	sed -n 's/^PADDOCK_LOCAL_HYPERVISOR=//p' .env 2>/dev/null)),auto)
run: setup
	@if [ "$$(id -u)" -eq 0 ] && [ "$(LOCAL_HYPERVISOR)" != off ]; then \
		scripts/system-packages.sh --system || \
		echo "libvirtd/QEMU could not be installed: the demo uses the test driver." >&2; \
	fi
	@mkdir -p var
	@scripts/ensure-secret-key.sh
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput --verbosity 0
	$(MANAGE) runstack --seed --bind $(HOST) --port $(PORT)

# --- checks ----------------------------------------------------------------------------

test: setup-test
	@mkdir -p var
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The real-host suite (tests/system, marker `system`): two libvirtd hosts in network
# namespaces and real QEMU guests; needs root, installs libvirtd and QEMU when missing.
test-system: setup
	@scripts/system-packages.sh --system
	@mkdir -p var
	$(VENV)/bin/pytest -m system tests/system $(PYTEST_ARGS)

# The tiny guest image (guest/build-image.sh: Debian packages only, cached in var/).
image: python
	@scripts/system-packages.sh --system
	bash guest/build-image.sh var/images

# The tiny container template (guest/build-rootfs.sh: busybox-static only, cached in var/).
rootfs:
	bash guest/build-rootfs.sh var/images

# A multi-host testbed on this machine (root): `make testbed HOSTS=3`, `make testbed-down`;
# CONTAINERS=1 registers the hosts as LXC container hosts too (tb-ctN).
HOSTS ?= 2
testbed: python
	@scripts/system-packages.sh --system
	@mkdir -p var
	@scripts/ensure-secret-key.sh
	$(MANAGE) migrate --noinput --verbosity 0
	$(MANAGE) testbed up --hosts $(HOSTS) $(if $(CONTAINERS),--containers)

testbed-down: python
	$(MANAGE) testbed down

lint: python
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=true $(VENV)/bin/mypy hosting workers dashboard config devtools testbed

bench: python
	$(VENV)/bin/python bench/api_list.py

# Placement at fleet scale: orders/s, p50/p95, 200 orders at once, pack vs lower bound
# (bench/placement.py; BENCH_PLACEMENT_ARGS="--orders 8000").
bench-placement: python
	$(VENV)/bin/python bench/placement.py $(BENCH_PLACEMENT_ARGS)

# The balancer's planner replayed over a generated 24-hour trace (fixed seed): spread with
# and without it, migrations, GiB moved, servers moved twice within the cooldown.
bench-balance: python
	$(VENV)/bin/python bench/balance.py $(BENCH_BALANCE_ARGS)

# One stats collector pass over 1,000 guests (test driver): bulk read vs one call per guest.
bench-collector: python
	$(VENV)/bin/python bench/collector.py

# One server's usage chart (1h/24h/7d/30d) and month with 1,000 servers' history present.
bench-history: python
	$(VENV)/bin/python bench/history.py

# The HTTP API under concurrent clients through the server stack of `make run`
# (bench/http_load.py); wrk when installed (optional system package), else httpx.
bench-http: python
	@scripts/system-packages.sh --bench
	$(VENV)/bin/python bench/http_load.py

# One ASGI process, its own Redis and SQLite: publish-to-receive latency, drops and CPU
# for 100, 500 and 2,000 sockets (bench/ws_fanout.py; BENCH_WS_ARGS="--seconds 20").
BENCH_WS_ARGS ?=
bench-ws: python
	$(VENV)/bin/python bench/ws_fanout.py $(BENCH_WS_ARGS)

# API request -> ready line on a one-host testbed: a VM against qemu-img + virsh, a container
# against tar + mkfs.ext4 + lxc-start (root; bench/provision.py --kind vm|container for one).
bench-provision: python
	@scripts/system-packages.sh --system
	$(VENV)/bin/python bench/provision.py

# Full backup of a 2 GiB disk (1 GiB of data) vs qemu-img convert, and an incremental
# after 1% changed vs the full, on a one-host testbed (root; bench/backup.py).
bench-backup: python
	@scripts/system-packages.sh --system
	@mkdir -p var
	$(VENV)/bin/python bench/backup.py

# Live migration of a guest with a hot working set of 0, 64 and 256 MiB on a two-host
# testbed: Paddock against plain `virsh migrate --live`, interleaved (root).
# BENCH_MIGRATION_ARGS="--runs 3 --sizes 0,64".
BENCH_MIGRATION_ARGS ?=
bench-migration: python
	@scripts/system-packages.sh --system
	$(VENV)/bin/python bench/migration.py $(BENCH_MIGRATION_ARGS)

clean:
	rm -rf $(TOOLS) $(VENV) node_modules static/vendor
