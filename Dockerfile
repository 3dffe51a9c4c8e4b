# The gateway image (default target) and the one-shot converter image (--target convert). Each
# installs exactly its role's locked set through deploy/install.sh, the install line that
# tests/deploy/test_image_env.py runs too; requirements/lock.sh regenerates the locks.
FROM python:3.11.14-slim-bookworm AS base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements requirements
COPY deploy/install.sh deploy/install.sh
COPY core core
COPY picmetric picmetric
COPY conversion conversion
COPY gateway gateway

FROM base AS convert
RUN deploy/install.sh convert
# compose mounts the checkout's model_repository here (the yolov3 exporter reads its class names)
ENV PICMETRIC_MODEL_REPOSITORY=/app/model_repository
CMD ["picmetric", "convert", "all", "--weights", "auto", "--repository", "/app/model_repository"]

FROM base AS gateway
RUN deploy/install.sh gateway && useradd --system --uid 10001 picmetric
USER picmetric
EXPOSE 8080
CMD ["picmetric", "gateway", "--host", "0.0.0.0", "--port", "8080"]
