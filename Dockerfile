# Storeolis Support Bridge as a container image (README "Production", compose.yaml).
#
#   docker build -t storeolis-bridge .
#   docker build --build-arg BASE_IMAGE=registry.example/python:3.11-slim-bookworm -t storeolis-bridge .
#
# BASE_IMAGE is any image with Python 3.11+ as `python3` and its venv module: the official python:*-slim
# images (/usr/local/bin/python3) or a Debian bookworm with python3 and python3-venv (/usr/bin/python3,
# scripts/container-smoke.sh builds one). Both stages use the same base: the virtual environment links to
# the base's interpreter. Everything the bridge needs at run time is in the image (the pymorphy3 Russian
# dictionaries come with the pymorphy3-dicts-ru wheel, the templates and config/defaults with the code):
# nothing is downloaded at start.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# The interpreter that creates the virtual environment (any name on the base's PATH, or a full path).
ARG PYTHON=python3
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# The same path as the systemd install (deploy/storeolis-bridge.service): the package is installed in
# editable mode, as scripts/install.sh does, because the code finds templates/ and config/defaults/ next to
# its own folders; the final stage copies this folder to the same path.
WORKDIR /opt/storeolis-bridge
COPY pyproject.toml requirements-runtime.lock ./
# The runtime dependencies at the exact versions and hashes of requirements-runtime.lock (the project
# without its test tools; README, "Development"). A layer of its own, so a code change does not reinstall them.
RUN "$PYTHON" -m venv .venv \
 && .venv/bin/python -m pip install -q --require-hashes -r requirements-runtime.lock
COPY README.md ./
COPY bot ./bot
COPY mail ./mail
COPY models ./models
COPY templates ./templates
COPY config ./config
# The dictionaries must load from the wheel, offline, and the base must have the time zone database
# (TIMEZONE is checked at start): fail the build here rather than the first start.
RUN .venv/bin/python -m pip install -q --no-deps -e . \
 && .venv/bin/python -c "import pymorphy3; pymorphy3.MorphAnalyzer(lang='ru')" \
 && .venv/bin/python -c "import zoneinfo; zoneinfo.ZoneInfo('Europe/Moscow')" \
 && .venv/bin/python -m compileall -q bot mail models

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="Storeolis Support Bridge" \
      org.opencontainers.image.description="Support mailbox (IMAP/SMTP) <-> Telegram staff chat help desk"
ENV PATH=/opt/storeolis-bridge/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A system user without a login shell; its home is the working directory, where the default SQLite
# database (./data) and backups live (the compose file mounts a volume on ./data).
RUN groupadd --system --gid 10001 storeolis \
 && useradd --system --uid 10001 --gid storeolis --home-dir /var/lib/storeolis-bridge --create-home \
            --shell /usr/sbin/nologin storeolis \
 && install -d -o storeolis -g storeolis -m 0750 /var/lib/storeolis-bridge/data
COPY --from=builder /opt/storeolis-bridge /opt/storeolis-bridge
COPY deploy/healthcheck.py /opt/storeolis-bridge/deploy/healthcheck.py
# Numeric, so runAsNonRoot-style checks (Kubernetes, podman) can see it is not root: storeolis.
USER 10001:10001
WORKDIR /var/lib/storeolis-bridge
# /health answers 200 only when every component runs and nothing has failed for OUTAGE_NOTICE_SECONDS
# (bot/health.py). It is served only when HEALTH_PORT is set (compose.yaml sets 8080); without it
# deploy/healthcheck.py has nothing to ask and passes. Python's urllib: the image needs no curl.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
  CMD ["python", "/opt/storeolis-bridge/deploy/healthcheck.py"]
# PID 1 is python itself (exec form, no shell): SIGTERM reaches bot/app.py's handler, which stops taking
# work, lets the components finish (10 s) and closes SMTP (up to SMTP_TIMEOUT_SECONDS). Give it time:
# compose.yaml's stop_grace_period is 90 s, like the systemd unit's TimeoutStopSec.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
