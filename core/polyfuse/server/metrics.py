"""Prometheus metrics of one server (its own registry, so several apps can coexist)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..results import FusionResult

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
NO_MODEL = "-"


class ServerMetrics:
    """Requests by model and status, latency, time to first token, failed candidates and
    tokens by role.

    ``model`` labels only take preset names (or ``-`` for requests refused before their model
    was known), so a client cannot blow up the label set with made-up model names.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "polyfuse_requests",
            "Chat completion requests, by preset and HTTP status.",
            ("model", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "polyfuse_request_duration_seconds",
            "Time from request to the end of the answer, by preset and streaming.",
            ("model", "stream"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "polyfuse_time_to_first_token_seconds",
            "Time from request to the first token of a streamed answer.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.candidates_failed = Counter(
            "polyfuse_candidates_failed",
            "Candidates that failed or were cancelled, by preset and status.",
            ("model", "status"),
            registry=self.registry,
        )
        self.tokens = Counter(
            "polyfuse_tokens",
            "Tokens of every call, by preset, role (candidates, aggregator, judge) and kind "
            "(prompt, completion).",
            ("model", "role", "kind"),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "polyfuse_requests_in_flight",
            "Chat completions being answered now.",
            registry=self.registry,
        )

    def request(self, model: str, status: int) -> None:
        """Count one finished (or refused) request."""
        self.requests.labels(model, str(status)).inc()

    def rejected(self, status: int) -> None:
        """Count a request refused before its model was known (401, 413, 429, ...)."""
        self.request(NO_MODEL, status)

    def no_candidates(self, model: str, failed: int) -> None:
        """Record a fusion whose candidates all failed."""
        self.candidates_failed.labels(model, "failed").inc(failed)

    def observe(
        self,
        model: str,
        result: FusionResult,
        *,
        stream: bool,
        latency_s: float,
        ttft_s: float | None = None,
    ) -> None:
        """Record a successful fusion."""
        self.latency.labels(model, "true" if stream else "false").observe(latency_s)
        if ttft_s is not None:
            self.ttft.labels(model).observe(ttft_s)
        for candidate in result.failed:
            self.candidates_failed.labels(model, candidate.status).inc()
        usage = result.usage
        for role, part in (
            ("candidates", usage.candidates),
            ("aggregator", usage.aggregator),
            ("judge", usage.judge),
        ):
            if part.prompt_tokens:
                self.tokens.labels(model, role, "prompt").inc(part.prompt_tokens)
            if part.completion_tokens:
                self.tokens.labels(model, role, "completion").inc(part.completion_tokens)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
