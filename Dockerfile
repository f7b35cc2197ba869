# syntax=docker/dockerfile:1
# The gateway's one image: web (`python -m gateway.server`), Celery worker and beat, and the
# migrate job all run from it with different commands (docker-compose.yml, deploy/kubernetes).
#   docker build -t jan-gateway:0.1.0 --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
# It runs as an unprivileged user and writes nothing outside /tmp, so the root filesystem can be
# mounted read-only.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the runtime dependencies in a virtualenv, the static files collected ---------------
FROM ${PYTHON_IMAGE} AS build
# uv installs the locked tree in a fraction of pip's time; the same version as the Makefile's.
ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_NO_CACHE=1
RUN python -m pip install "uv==${UV_VERSION}" && python -m venv /opt/venv
# The runtime lock alone first, so a code change does not reinstall the dependencies. No test
# or lint tools: those are in requirements-dev.lock, which the image never installs.
COPY requirements.lock /tmp/requirements.lock
RUN uv pip install --python /opt/venv/bin/python --compile-bytecode --requirement /tmp/requirements.lock \
    && uv pip check --python /opt/venv/bin/python
WORKDIR /app
COPY . .
# Admin and API-docs assets are served by the web process itself from STATIC_ROOT (under
# GATEWAY_DATA_DIR): collect them now, the running container cannot write there. Settings load
# with their development defaults here; nothing connects to a database. The embedded-mode folders
# that loading them creates are dropped.
RUN GATEWAY_DATA_DIR=/app/.data /opt/venv/bin/python manage.py collectstatic --noinput --verbosity 0 \
    && find /app/.data -mindepth 1 -maxdepth 1 ! -name static -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -j 0 /app

# --- runtime: the virtualenv and the code, owned by root, run by an unprivileged user --------------
FROM ${PYTHON_IMAGE} AS runtime
ARG GIT_COMMIT=""
ARG BUILD_TIME=""
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# HOME and the multi-process metrics live in /tmp: the one writable place (a tmpfs or emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GATEWAY_DATA_DIR=/app/.data \
    GATEWAY_ENV=prod \
    HOST=0.0.0.0 \
    PORT=8080 \
    GIT_COMMIT=${GIT_COMMIT} \
    BUILD_TIME=${BUILD_TIME}
USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "gateway.server"]
