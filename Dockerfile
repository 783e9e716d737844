FROM python:3.13-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY api ./api
COPY documents ./documents
COPY scripts ./scripts
RUN pip install --no-cache-dir . && useradd --system --no-create-home docstore
USER docstore
EXPOSE 8000
# One process per container (scale with replicas): api.server closes live sockets with
# 1001 on shutdown, and the change-stream feed reaches subscribers of every replica.
CMD ["python", "-m", "api.server", "--host", "0.0.0.0", "--port", "8000"]
