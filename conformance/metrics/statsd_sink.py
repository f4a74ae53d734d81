"""The run's metrics as statsd gauges, for OpenDev's Graphite/Grafana (where Zuul and nodepool send theirs).

Sent with the `statsd` client Zuul uses, only when a host is given (--statsd-host or STATSD_HOST): never to a
default address. Names follow Zuul's and nodepool's dotted style, one keyword before each variable part:
`conformance.cloud.<cloud>.region.<region>.<metric>`, with `--statsd-prefix` (STATSD_PREFIX) in front. A `.`
or `:` (or anything else statsd cannot carry) in a cloud, region or service name becomes `_`, as Zuul does.
The names are listed in docs/metrics.md and the README.
"""

from __future__ import annotations

import math
import re

from conformance.metrics.model import ScopeMetrics, verdict_code

DEFAULT_PORT = 8125
ROOT = "conformance"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# The burst's live line (conformance.burst.format_progress); test_metrics_model checks the two still agree.
_PROGRESS = re.compile(
    r"burst (?P<active>\d+)/(?P<size>\d+) ACTIVE, (?P<error>\d+) ERROR, (?P<build>\d+) BUILD, "
    r"(?P<minutes>\d+):(?P<seconds>\d\d)(?: \| delete: (?P<delete_left>\d+) left)?"
)


class StatsdError(Exception):
    """The statsd host cannot be resolved: a usage error, reported before the run starts."""


def normalize(name: str) -> str:
    return _UNSAFE.sub("_", str(name)) or "_"


def scope_key(cloud: str, region: str) -> str:
    return f"{ROOT}.cloud.{normalize(cloud)}.region.{normalize(region)}"


def end_of_run(scopes: list[ScopeMetrics]) -> list[tuple[str, float, str]]:
    """(name, value, statsd type) of every metric of the run: `g` gauges and one `c` counter per scope."""
    stats: list[tuple[str, float, str]] = []

    def gauge(name: str, value) -> None:
        if value is not None and math.isfinite(value):  # unknown and unlimited are not sent
            stats.append((name, value, "g"))

    for scope in scopes:
        key = scope_key(scope.cloud, scope.region)
        stats.append((f"{key}.runs", 1, "c"))
        gauge(f"{key}.verdict", verdict_code(scope.verdict))
        for rid, verdict in scope.requirements.items():
            gauge(f"{key}.requirement.{normalize(rid)}", verdict_code(verdict))
        for name, value in (
            ("duration", scope.duration_s),
            ("burst.p50", scope.burst_p50_s),
            ("burst.p95", scope.burst_p95_s),
            ("burst.max", scope.burst_max_s),
            ("burst.failure_rate", scope.burst_failure_rate),
            ("burst.boots_per_minute", scope.burst_boots_per_minute),
            ("burst.size", scope.burst_size),
            ("quota.instances_headroom", scope.quota_instances_headroom),
            ("keystone.cert_days_to_expiry", scope.cert_days_to_expiry),
        ):
            gauge(f"{key}.{name}", value)
        for service, f in sorted(scope.api.items()):
            for name, value in (
                ("calls", f.count),
                ("errors", f.errors),
                ("p50", f.p50_s),
                ("p95", f.p95_s),
                ("max", f.max_s),
            ):
                gauge(f"{key}.api.{normalize(service)}.{name}", value)
    return stats


def burst_progress(cloud: str, region: str, line: str) -> list[tuple[str, float, str]]:
    """Gauges of the burst's live line: servers ACTIVE, in ERROR, still building, not yet deleted."""
    match = _PROGRESS.search(line or "")
    if not match:
        return []
    key = f"{scope_key(cloud, region)}.burst.progress"
    stats = [(f"{key}.{name}", int(match[name]), "g") for name in ("size", "active", "error", "build")]
    stats.append((f"{key}.elapsed", int(match["minutes"]) * 60 + int(match["seconds"]), "g"))
    if match["delete_left"] is not None:
        stats.append((f"{key}.delete_left", int(match["delete_left"]), "g"))
    return stats


class StatsdSink:
    """A statsd client for one run; `send` batches stats into as few UDP packets as fit."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, prefix: str | None = None):
        import statsd

        self.host, self.port, self.prefix = host, int(port), prefix or None
        try:
            self.client = statsd.StatsClient(host, self.port, prefix=self.prefix)
        except (OSError, ValueError) as exc:  # getaddrinfo: unknown host, bad port
            raise StatsdError(f"statsd host {host!r} (--statsd-host / STATSD_HOST): {exc}") from None
        self.sent = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" + (f" (prefix {self.prefix})" if self.prefix else "")

    def send(self, stats: list[tuple[str, float, str]]) -> int:
        if not stats:
            return 0
        with self.client.pipeline() as pipe:
            for name, value, kind in stats:
                if kind == "c":
                    pipe.incr(name, value)
                else:
                    pipe.gauge(name, value)
        self.sent += len(stats)
        return len(stats)

    def close(self) -> None:
        self.client.close()


def sink_from(host: str | None, port: int | str | None = None, prefix: str | None = None) -> StatsdSink | None:
    """A sink, or None without a host: nothing is ever sent to a default address."""
    if not host:
        return None
    try:
        port = int(port or DEFAULT_PORT)
    except ValueError:
        raise StatsdError(f"statsd port {port!r} (--statsd-port / STATSD_PORT) is not a number") from None
    if not 0 < port < 65536:
        raise StatsdError(f"statsd port {port} (--statsd-port / STATSD_PORT) is not a UDP port (1-65535)")
    return StatsdSink(host, port, prefix)
