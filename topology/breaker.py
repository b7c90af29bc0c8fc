"""A worker's circuit breaker as the topology file writes it, and the mistakes in it.

    breaker: {failures: 5, cool_down: 30s}                   # consecutive transient failures
    breaker: {error_rate: 0.5, window: 1m, min_calls: 20}    # or a share of a window's calls

Either condition opens it (docs/concepts/flow-control.md: circuit breaker).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from topology.duration import Duration
from topology.problems import Problem

#: Consecutive transient failures that open a breaker that names no threshold.
DEFAULT_FAILURES = 5


class CircuitBreaker(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Stop consuming after `failures` transient failures in a row (or, with
    `error_rate`, when that share of the calls of the last `window` failed, over
    at least `min_calls`); after `cool_down`, let one message through to probe."""

    failures: Annotated[int, msgspec.Meta(ge=1)] | None = None
    cool_down: Duration = Duration(30_000)
    error_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    window: Duration | None = None
    min_calls: Annotated[int, msgspec.Meta(ge=1)] | None = None

    @property
    def threshold(self) -> int | None:
        """Consecutive failures that open it: `failures`, else the default unless
        only the error-rate form is written (None: no consecutive-failure trip)."""
        if self.failures is not None:
            return self.failures
        return None if self.error_rate is not None else DEFAULT_FAILURES

    @property
    def rate_window(self) -> Duration:
        return self.window if self.window is not None else Duration(60_000)

    @property
    def rate_min_calls(self) -> int:
        return self.min_calls if self.min_calls is not None else 10


def breaker_problems(worker: str, breaker: CircuitBreaker | None) -> list[Problem]:
    """Contradictions msgspec cannot see, each naming its path under ``workers.<worker>``."""
    if breaker is None:
        return []
    path = f"workers.{worker}.breaker"
    return [
        Problem(
            f"{path}.{setting}",
            f"{setting} belongs to the error-rate form: add error_rate (a share such as 0.5), "
            "or remove it",
        )
        for setting in ("window", "min_calls")
        if breaker.error_rate is None and getattr(breaker, setting) is not None
    ]
