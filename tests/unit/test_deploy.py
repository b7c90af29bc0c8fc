"""compose.yaml's Prometheus and Grafana agree with what the workers serve.

Docker is not run here: the files are parsed, and their references checked
against the topology's metrics port and the metric names fleet exposes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from topology import load
from workers.observability.exposition import FleetCollector
from workers.observability.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\bfleet_[a-z_]+")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def exposed() -> set[str]:
    """Every sample name a worker's /metrics can carry."""
    collector = FleetCollector()
    collector.workers.append(WorkerMetrics("w", "q", ["E"]))
    names = set()
    for family in collector.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names | _relay_metrics()


def _relay_metrics() -> set[str]:
    """The outbox relay's sample names (`fleet outbox run` serves them)."""
    from workers.outbox import metrics

    names = set()
    for metric in (
        metrics.DEPTH,
        metrics.OLDEST,
        metrics.PARKED,
        metrics.ACTIVE,
        metrics.PUBLISHED,
        metrics.PARKED_ROWS,
    ):
        for family in metric.describe():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


class TestCompose:
    def test_prometheus_scrapes_every_worker_service_on_the_metrics_port(self) -> None:
        """The scrape config names each `worker run` and `outbox run` service (the
        relays serve the outbox's gauges), on the port the workers use."""
        services = compose()["services"]
        workers = {
            name
            for name, s in services.items()
            if s.get("command", [])[:2] in (["worker", "run"], ["outbox", "run"])
        }
        scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
        [job] = scrape["scrape_configs"]
        [dns] = job["dns_sd_configs"]
        assert set(dns["names"]) == workers
        port = load(ROOT / "examples/fulfilment/fleet.yaml").metrics.port
        assert dns["port"] == port
        assert services["inventory"]["environment"]["FLEET_METRICS_PORT"] == str(port)

    def test_prometheus_and_grafana_mount_files_that_exist(self) -> None:
        """Every bind mount of the two services points into the repository."""
        services = compose()["services"]
        for name in ("prometheus", "grafana"):
            for volume in services[name]["volumes"]:
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), f"{name}: {source}"


class TestDashboard:
    def test_the_dashboard_and_alerts_use_only_metrics_the_workers_expose(self) -> None:
        """A renamed metric would leave an empty panel: every name must exist."""
        dashboard = json.loads((ROOT / "deploy/grafana/dashboards/fleet.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
        exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
        used = {name for expr in exprs for name in METRIC.findall(expr)}
        assert used, "no fleet metric referenced"
        assert used <= exposed(), used - exposed()

    def test_the_dashboard_covers_throughput_latency_errors_and_lag(self) -> None:
        """One panel at least for each thing the operator needs."""
        dashboard = json.loads((ROOT / "deploy/grafana/dashboards/fleet.json").read_text())
        text = json.dumps(dashboard["panels"])
        for name in (
            "fleet_messages_processed_total",
            "fleet_messages_retried_total",
            "fleet_messages_dead_lettered_total",
            "fleet_handler_duration_seconds_bucket",
            "fleet_message_latency_seconds_bucket",
            "fleet_publish_confirm_seconds_bucket",
            "fleet_messages_in_flight",
            "fleet_queue_messages_ready",
            "fleet_queue_messages_unacked",
            "fleet_queue_consumers",
        ):
            assert name in text, name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
