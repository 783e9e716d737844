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
CMD ["uvicorn", "--factory", "api.main:app_from_env", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-access-log", "--proxy-headers"]
