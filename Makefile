# Two commands for a fresh machine: `make run` and `make test`. Both set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
export PORT
APPS := gateway accounts organizations conversations responses inference mcp_server

.PHONY: install run test lint typecheck checks pytest bench migrate compat

$(VENV)/.installed: requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# Web (uvicorn, WEB_CONCURRENCY workers), Celery worker and beat in the foreground; Ctrl-C stops all.
# The workers share Prometheus samples through files in PROMETHEUS_MULTIPROC_DIR, emptied at each
# start so a previous run's counters and dead workers' gauges are not added in (gateway.metrics).
run: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/.data/prometheus
run: migrate
	rm -rf "$(PROMETHEUS_MULTIPROC_DIR)" && mkdir -p "$(PROMETHEUS_MULTIPROC_DIR)"
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(VENV)/bin/honcho start --no-prefix -f Procfile

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy $(APPS)

checks: install
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

pytest: install
	$(VENV)/bin/pytest -q

# The whole suite, against PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set, else embedded.
test: lint typecheck checks pytest

bench: install
	$(PY) bench/run.py

# The compatibility matrix: pinned real clients (compat/python, compat/package.json) against the
# gateway and the fake upstream, all on 127.0.0.1 (compat/run.py; needs npm and network to PyPI/npm
# the first time, then the installs are reused).
compat: install
	$(PY) compat/run.py
