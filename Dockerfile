# The gateway image (default target) and the one-shot converter image (--target convert).
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY picmetric picmetric
COPY conversion conversion
COPY gateway gateway

FROM base AS convert
RUN pip install -e ".[convert]"
CMD ["picmetric", "convert", "all", "--weights", "auto", "--repository", "/app/model_repository"]

FROM base AS gateway
RUN pip install -e . && useradd --system --uid 10001 picmetric
USER picmetric
EXPOSE 8080
CMD ["picmetric", "gateway", "--host", "0.0.0.0", "--port", "8080"]
