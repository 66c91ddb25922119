# syntax=docker/dockerfile:1
# One image for the three QuantZoo processes; the command picks the component:
#   quantzoo-operator   (the chart's Deployment; /healthz and /metrics on 8080)
#   quantzoo-engine     (created by the operator; FastAPI on 8001)
#   quantzoo-safety     (created by the operator; FastAPI on 8888)
# Build:  docker build -t quantzoo/quantzoo:0.1.0 .
# kind:   kind load docker-image quantzoo/quantzoo:0.1.0        (see charts/quantzoo/README.md)
#
# Health: Kubernetes probes, not a Docker HEALTHCHECK, check each component on its own port (the chart's
# operator probes GET /healthz on 8080; the operator gives engine pods /healthz on 8001 and safety pods
# /healthz on 8888). One image serves three ports, so a single image-level check would be wrong for two.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: build the wheel from pyproject.toml and install it with its dependencies into a venv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY api/ api/
COPY operator/ operator/
COPY engine/ engine/
COPY safety/ safety/
COPY crds/ crds/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/python -m pip install --no-cache-dir /wheels/quantzoo-*.whl \
    && /opt/venv/bin/python -m pip uninstall --yes pip \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- final: slim Python, the venv, a numeric non-root user, nothing else ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="quantzoo" \
      org.opencontainers.image.description="QuantZoo operator, trading engine and safety service" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
# No shell login, no home directory writes: the root filesystem is mounted read-only in the cluster.
RUN groupadd --system --gid 10001 quantzoo \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin quantzoo
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8001 8888
HEALTHCHECK NONE
CMD ["quantzoo-operator"]
