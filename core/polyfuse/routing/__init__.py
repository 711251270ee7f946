"""Query-level fusion (FusionFactory): routing logs, and the routers learned from them."""

from __future__ import annotations

from .records import ROUTING_LOG_VERSION, RoutingRecord, read_routing_log, write_routing_log

__all__ = ["ROUTING_LOG_VERSION", "RoutingRecord", "read_routing_log", "write_routing_log"]
