# syntax=docker/dockerfile:1
# Paddock's production image: one image for the web server (gunicorn with uvicorn workers,
# config/webserver.py), the Celery worker and Celery beat; docker-compose.yml runs it three
# times beside PostgreSQL and Redis.

# --- front-end assets from npm (bootstrap, bootstrap-icons, htmx) ----------------------
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/vendor.mjs scripts/vendor.mjs
# npm ci runs the "vendor" script (postinstall): node_modules -> static/vendor/
RUN npm ci --no-audit --no-fund

# --- Python environment from uv.lock ----------------------------------------------------
FROM python:3.12-slim-bookworm AS python
# libvirt-python has no wheels: it is built against the system libvirt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvirt-dev pkg-config gcc \
    && rm -rf /var/lib/apt/lists/*
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --python /usr/local/bin/python3

# --- runtime ----------------------------------------------------------------------------
FROM python:3.12-slim-bookworm
# libvirt0: the client library; openssh-client: for qemu+ssh:// host URIs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvirt0 libvirt-clients openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/paddock paddock
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    PADDOCK_IMAGE_STORE=/var/lib/paddock/images
COPY --from=python /app/.venv /app/.venv
COPY . .
COPY --from=assets /src/static/vendor static/vendor
# Static files are collected at build time (whitenoise serves them); the key is a
# placeholder for this one command, the real one comes from the environment.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p var /var/lib/paddock/images \
    && chown -R paddock:paddock var /var/lib/paddock
USER paddock
EXPOSE 8000
CMD ["python", "-m", "config.webserver", "--bind", "0.0.0.0", "--port", "8000"]
