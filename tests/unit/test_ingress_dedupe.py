"""The ingress's memory of caller-given ids: repeats, conflicts, in-flight, expiry."""

from __future__ import annotations

import pytest

from workers.ingress.dedupe import RecentIds, Seen


def test_a_repeat_after_acceptance_is_a_duplicate_and_a_changed_body_a_conflict() -> None:
    recent = RecentIds()
    assert recent.begin("/hooks", "id-1", b"{}", 60) is Seen.NEW
    recent.accepted("/hooks", "id-1")
    assert recent.begin("/hooks", "id-1", b"{}", 60) is Seen.DUPLICATE
    assert recent.begin("/hooks", "id-1", b'{"x": 1}', 60) is Seen.CONFLICT


def test_a_repeat_while_publishing_is_in_progress() -> None:
    recent = RecentIds()
    recent.begin("/hooks", "id-1", b"{}", 60)
    assert recent.begin("/hooks", "id-1", b"{}", 60) is Seen.IN_PROGRESS


def test_an_abandoned_id_can_be_published_again() -> None:
    recent = RecentIds()
    recent.begin("/hooks", "id-1", b"{}", 60)
    recent.abandon("/hooks", "id-1")
    assert recent.begin("/hooks", "id-1", b"{}", 60) is Seen.NEW


def test_ids_are_scoped_per_route() -> None:
    recent = RecentIds()
    recent.begin("/a", "id-1", b"{}", 60)
    recent.accepted("/a", "id-1")
    assert recent.begin("/b", "id-1", b"{}", 60) is Seen.NEW


def test_an_id_is_forgotten_after_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("workers.ingress.dedupe.time.monotonic", lambda: clock[0])
    recent = RecentIds()
    recent.begin("/a", "id-1", b"{}", 60)
    recent.accepted("/a", "id-1")
    clock[0] += 59
    assert recent.begin("/a", "id-1", b"{}", 60) is Seen.DUPLICATE
    clock[0] += 2
    assert recent.begin("/a", "id-1", b"{}", 60) is Seen.NEW


def test_the_oldest_ids_are_dropped_past_the_bound() -> None:
    recent = RecentIds(max_entries=2)
    for key in ("a", "b", "c"):
        recent.begin("/r", key, b"{}", 60)
        recent.accepted("/r", key)
    assert recent.begin("/r", "a", b"{}", 60) is Seen.NEW
    assert recent.begin("/r", "c", b"{}", 60) is Seen.DUPLICATE
