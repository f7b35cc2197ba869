# Two commands for a fresh machine: `make run` and `make test`. Both set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
export PORT
APPS := gateway accounts organizations conversations responses inference mcp_server webtools

.PHONY: install install-dev run test test-fast lint typecheck checks pytest bench migrate compat

# uv installs the pinned tree in about a fifth of pip's time (measured on a cold cache: 10 s
# against 51 s for the runtime tree); pip only bootstraps uv itself.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

$(UV):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The runtime tree (requirements.lock) for `make run`; the test tools on top for `make test`.
$(VENV)/.installed-run: requirements.lock | $(UV)
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	touch $@

$(VENV)/.installed-dev: requirements.lock requirements-dev.lock | $(UV)
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.lock
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput

# Web (gateway.server: uvicorn, WEB_CONCURRENCY workers), Celery worker and beat in the foreground
# under gateway.supervisor: a crashed process is restarted, Ctrl-C or SIGTERM drains and stops all.
# The workers share Prometheus samples through files in PROMETHEUS_MULTIPROC_DIR, emptied at each
# start so a previous run's counters and dead workers' gauges are not added in (gateway.metrics).
run: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/.data/prometheus
run: migrate
	rm -rf "$(PROMETHEUS_MULTIPROC_DIR)" && mkdir -p "$(PROMETHEUS_MULTIPROC_DIR)"
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) -m gateway.supervisor Procfile

lint: install-dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: install-dev
	$(VENV)/bin/mypy $(APPS)

checks: install-dev
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

# In-process tests spread over the cores (pytest-xdist gives each worker its own test database and
# Redis db); the tests that start processes (`slow`: uvicorn and Celery subprocesses, a browser,
# npx) run after them one at a time, since several at once on two cores would starve their deadlines.
PYTEST_WORKERS ?= auto
pytest: install-dev
	$(VENV)/bin/pytest -q -m "not slow" -n $(PYTEST_WORKERS)
	$(VENV)/bin/pytest -q -m slow

# The whole suite, against PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set, else embedded.
test: lint typecheck checks pytest

# The inner loop: everything but the process-starting tests, no lint/type checks.
test-fast: install-dev
	$(VENV)/bin/pytest -q -m "not slow" -n $(PYTEST_WORKERS)

# bench/README.md. PEERS=litellm,portkey adds those gateways to the same run (installed once into
# bench/.peers/; needs network to PyPI/npm the first time); BENCH_ARGS passes options (--quick ...).
bench: install-dev
	$(PY) bench/run.py $(if $(PEERS),--peers $(PEERS)) $(BENCH_ARGS)

# The compatibility matrix: pinned real clients (compat/python, compat/package.json) against the
# gateway and the fake upstream, all on 127.0.0.1 (compat/run.py; needs npm and network to PyPI/npm
# the first time, then the installs are reused).
compat: install-dev
	$(PY) compat/run.py
