# One image for every fleet process: topology apply, each worker, the ingress.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY contracts contracts
COPY topology topology
COPY workers workers
# The reference fleet, a project of its own (a workspace member): its fleet.yaml,
# contracts, workers, stand-ins and demo.
COPY examples examples
# The otlp extra: traces export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
RUN uv sync --locked --no-dev --all-packages --no-editable --extra otlp
ENV PATH="/app/.venv/bin:$PATH" FLEET_LOG_FORMAT=json
# Commands find the reference fleet's fleet.yaml in the working directory.
WORKDIR /app/examples/fulfilment
ENTRYPOINT ["fleet"]
