"""A subscription resolved for running: secrets and URL from the environment, queue names."""

from __future__ import annotations

import pytest

from topology import loads
from workers.standard_webhooks import new_secret
from workers.webhooks import WebhookConfigError, resolve

TOPOLOGY = loads(
    """
exchanges: {orders: {}}
webhooks:
  crm:
    url: https://crm.example.com/hooks
    url_env: CRM_URL
    exchange: orders
    events: [OrderConfirmed, {contract: OrderCancelled, version: 2}]
    secrets_env: [CRM_SECRET, CRM_SECRET_OLD]
    retry: {delays: [200ms, 1s]}
"""
)
NEW, OLD = new_secret(), new_secret()


def test_every_set_secret_signs_newest_first() -> None:
    [crm] = resolve(TOPOLOGY, environ={"CRM_SECRET": NEW, "CRM_SECRET_OLD": OLD})
    assert crm.secrets == (NEW, OLD)


def test_an_unset_old_secret_is_skipped() -> None:
    [crm] = resolve(TOPOLOGY, environ={"CRM_SECRET": NEW, "CRM_SECRET_OLD": ""})
    assert crm.secrets == (NEW,)


def test_queues_events_and_attempts_follow_the_file() -> None:
    [crm] = resolve(TOPOLOGY, environ={"CRM_SECRET": NEW})
    assert crm.queues == [
        "webhook.crm",
        "webhook.crm.retry.200ms",
        "webhook.crm.retry.1s",
        "webhook.crm.dead",
    ]
    assert crm.events == {("OrderConfirmed", 1), ("OrderCancelled", 2)}
    assert crm.attempts == 3
    assert crm.url == "https://crm.example.com/hooks"


def test_url_env_replaces_the_url_when_set() -> None:
    [crm] = resolve(TOPOLOGY, environ={"CRM_SECRET": NEW, "CRM_URL": "https://staging.example/h"})
    assert crm.url == "https://staging.example/h"


@pytest.mark.parametrize(
    ("names", "environ", "message"),
    [
        ((), {}, "webhooks.crm.secrets_env: none of the environment variables CRM_SECRET, "
         "CRM_SECRET_OLD is set"),
        ((), {"CRM_SECRET": "whsec_not base64!"}, "webhooks.crm.secrets_env: a Standard Webhooks "
         "secret is not valid base64"),
        (("crm", "erp"), {"CRM_SECRET": NEW}, "no webhook subscription 'erp' in the topology "
         "(known: crm)"),
    ],
)  # fmt: skip
def test_what_cannot_run_is_refused_with_its_path(
    names: tuple[str, ...], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(WebhookConfigError) as caught:
        resolve(TOPOLOGY, names, environ=environ)
    assert str(caught.value) == message
