# syntax=docker/dockerfile:1
#
# One image for every Reprise process: api, worker, beat, flower and the one-shot
# migration all run `reprise <subcommand>` from it (see compose.yaml and k8s/).
#
#   docker build -t reprise:latest .
#   docker run --rm -p 8000:8000 --env-file .env reprise:latest    # the api (default CMD)

ARG PYTHON_VERSION=3.11

# --- build: install the distribution and its dependencies into a self-contained venv ---
FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# Not editable: the runtime stage gets the venv only, never the source tree. The SDK (the
# root) and the server (server/, whose package links api/, shared/, workers/ and examples/)
# are installed together; the migrations, the dashboard's files and the demo tasks ship
# inside the server's package, so nothing else is needed at run time. `s3` lets the same
# image keep packets in a bucket (REPRISE_PACKET_STORE=s3).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip \
    && pip install . './server[s3]'

# --- runtime: the venv plus tini, run as an unprivileged user ---
FROM python:${PYTHON_VERSION}-slim AS runtime

# tini as PID 1 forwards SIGTERM to the process (Celery's warm/soft shutdown depends on
# receiving it) and reaps orphans that task code may leave behind.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid so Kubernetes can verify runAsNonRoot without a runAsUser override.
RUN groupadd --system --gid 10001 reprise \
    && useradd --system --uid 10001 --gid reprise --create-home --home-dir /home/reprise \
        --shell /usr/sbin/nologin reprise

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The working directory is the user's home so a process that writes beside itself
# (e.g. Celery beat's schedule file) can, while the installed code stays root-owned.
WORKDIR /home/reprise
USER 10001:10001

EXPOSE 8000 5555

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["reprise", "api", "--host", "0.0.0.0", "--port", "8000"]
