# The two commands of the README's quick start, and the checks CI runs.
.PHONY: up test lint bench

# Install, make sure RabbitMQ and PostgreSQL run (and the fleet database exists),
# apply the topology, and run the reference fleet with the stand-in gateway and carrier.
# The database: FLEET_DATABASE_URL, by default the local `fleet` database.
up: export FLEET_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/fleet
up:
	@.ci/setup && .ci/services
	.venv/bin/fleet up --standins

# Install, make sure RabbitMQ runs, lint and type-check, then run the test suite.
test:
	@.ci/setup && .ci/services
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/mypy --strict tests/typing
	.venv/bin/pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

# Benchmarks against bare aio-pika and FastStream (see tests/bench/README.md).
bench:
	@.ci/setup && .ci/services && uv sync --locked --quiet --group bench
	.venv/bin/python -m tests.bench $(ARGS)
