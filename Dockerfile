# Built in two stages: the first installs exactly what uv.lock names (no extras, no test tools,
# the project itself as a wheel, not an editable link) into /app/.venv; the image that runs keeps
# that venv and nothing else of the build. Both stages use the same base, so the venv's Python
# path holds.
FROM python:3.13.15-slim-trixie AS build
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1
# scripts/uv installs the uv version the project pins, from PyPI.
COPY scripts/uv scripts/uv
RUN scripts/uv --version
# The dependencies first, in a layer that a change to the code alone does not rebuild.
COPY pyproject.toml uv.lock README.md ./
RUN scripts/uv sync --frozen --no-dev --no-editable --no-install-project
COPY api ./api
COPY documents ./documents
COPY scripts ./scripts
RUN scripts/uv sync --frozen --no-dev --no-editable

FROM python:3.13.15-slim-trixie
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH
COPY --from=build /app/.venv /app/.venv
RUN useradd --system --no-create-home docstore
USER docstore
EXPOSE 8000
# One process per container (scale with replicas): api.server closes live sockets with
# 1001 on shutdown, and the change-stream feed reaches subscribers of every replica.
CMD ["python", "-m", "api.server", "--host", "0.0.0.0", "--port", "8000"]
