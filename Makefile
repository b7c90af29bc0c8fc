# The two commands of the README's quick start, and the checks CI runs.
.PHONY: up test test-rabbit4 lint bench docs

# Install, make sure RabbitMQ and PostgreSQL run (and the fleet database exists),
# apply the topology, and run the reference fleet (examples/fulfilment) with the
# stand-in gateway, carrier and webhook receiver its topology lists under `processes`.
# The database: FLEET_DATABASE_URL, by default the local `fleet` database; the
# notifications webhook is signed with FLEET_NOTIFY_WEBHOOK_SECRET, made up if unset.
up: export FLEET_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/fleet
up:
	@.ci/setup && .ci/services
	cd examples/fulfilment && FLEET_NOTIFY_WEBHOOK_SECRET=$${FLEET_NOTIFY_WEBHOOK_SECRET:-$$(../../.venv/bin/python -c 'from workers.standard_webhooks import new_secret; print(new_secret())')} ../../.venv/bin/fleet up

# The integration tests run a second time on aiormq's public API only
# (FLEET_AMQP_FASTPATH=0, workers/runtime/fastpath): the public-API subset, the
# consumer, publisher, inbox and webhook paths, where the fast path stands in
# for aiormq (under a minute).
PUBLIC_API_SUBSET = tests/integration/test_worker_process.py tests/integration/test_publisher.py \
	tests/integration/test_webhooks.py tests/integration/test_fault_events.py \
	tests/integration/test_fastpath.py

# The integration tests that run a second time, against RabbitMQ 4.0.5 (scripts/rabbit4:
# AMQP 5673, management 15673), once the whole suite passed on the machine's 3.10.8.
# They cover what 4.x treats differently: apply and plan of quorum and classic queues
# and their arguments, retry tiers and dead-lettering on quorum queues, crash loops up
# to the delivery limit (with and without an inbox database), worker processes end to
# end (a broker restart included), the webhook dispatcher, broker users and their
# permissions, dead-letter tooling. About 2 minutes; the TLS test (test_tls.py) runs on
# a 4.0 node already, in the main run.
RABBIT4_TESTS = \
	tests/integration/test_broker_versions.py \
	tests/integration/test_topology_apply.py \
	tests/integration/test_cli_topology.py \
	tests/integration/test_worker_process.py \
	tests/integration/test_hostile_messages.py \
	tests/integration/test_cli_dlq.py \
	tests/integration/test_webhooks.py \
	tests/integration/test_access.py \
	"tests/integration/test_faults.py::TestPoisonMessages::test_a_message_that_crashes_its_worker_is_parked_after_the_delivery_limit[quorum]"

# Install, make sure RabbitMQ runs, lint and type-check, build the manual (a broken
# link fails it), then run the test suite, its public-API subset again, and
# RABBIT4_TESTS against RabbitMQ 4.0 (started if down, its root built if missing).
test:
	@.ci/setup && .ci/services
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir .site
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/mypy --strict tests/typing
	cd examples/fulfilment && ../../.venv/bin/fleet contracts diff  # the reference fleet's gate
	.venv/bin/pytest
	FLEET_AMQP_FASTPATH=0 .venv/bin/pytest -q $(PUBLIC_API_SUBSET) -k "not the_fast_path and not TheGate and not AiormqsInternals and not BrokerRestart"
	@$(MAKE) --no-print-directory test-rabbit4

# RABBIT4_TESTS alone, against the RabbitMQ 4.0 node.
test-rabbit4:
	@.ci/setup && .ci/services rabbit4
	FLEET_TEST_AMQP_URL=$$(scripts/rabbit4 url) \
	FLEET_TEST_MANAGEMENT_URL=http://guest:guest@127.0.0.1:15673 \
	FLEET_TEST_RABBITMQCTL="'$(CURDIR)/scripts/rabbit4' ctl" \
	.venv/bin/pytest -q $(RABBIT4_TESTS)

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

# The manual (docs/, MkDocs), served at http://127.0.0.1:8000 and rebuilt on every save.
docs:
	@.ci/setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs serve

# Benchmarks against bare aio-pika, FastStream and a C client (see tests/bench/README.md):
# the default run measures steady-state drains and saga steps; ARGS=--all runs every scenario.
bench:
	@.ci/setup && .ci/services && uv sync --locked --quiet --group docs --group bench
	.venv/bin/python -m tests.bench $(ARGS)
