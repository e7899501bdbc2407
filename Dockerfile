# The rcc image: every part of the service (`rcc portal`, `rcc projector`, `rcc adapter`,
# `rcc migrate`, or all of them in `rcc serve`), installed with the pinned constraints.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RCC_DATA_DIR=/data

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p src/rcc && touch src/rcc/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y rcc && rm -rf src build *.egg-info

COPY src ./src
COPY projections ./projections
COPY schema ./schema
# Editable: the migrations are read from /app/schema next to the code.
RUN pip install --no-deps -c constraints.txt -e . \
    && useradd --system --uid 10001 --home-dir /data rcc \
    && mkdir -p /data/models /data/outputs \
    && chown -R rcc /data

USER rcc
EXPOSE 8000
CMD ["rcc", "serve", "--host", "0.0.0.0", "--port", "8000"]
