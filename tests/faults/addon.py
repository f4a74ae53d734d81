"""The fault-injecting mitmproxy addon: `mitmdump -s tests/faults/addon.py --set faults_rules=RULES.json`.

Runs inside mitmproxy's own environment (see proxy.py), so it imports nothing of the project but the rule
engine next to it. The rules file is re-read whenever it changes, so one proxy serves a whole test module;
what was injected is written to `faults_stats` after every change of the counters. Only loopback targets are
forwarded: anything else gets a 403 from the proxy itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import sys
import time
from pathlib import Path

from mitmproxy import http

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rules import FaultPlan, RulesError  # noqa: E402  (mitmdump loads this file as a script, not a package)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
log = logging.getLogger("faultproxy")


class FaultInjector:
    def __init__(self):
        self.plan = FaultPlan()
        self.rules_path: Path | None = None
        self.stats_path: Path | None = None
        self._mtime_ns = -1

    def load(self, loader):
        loader.add_option("faults_rules", str, "", "fault rules (JSON), re-read when it changes")
        loader.add_option("faults_stats", str, "", "where to write the counters of injected faults (JSON)")

    def configure(self, updated):
        from mitmproxy import ctx

        if "faults_rules" in updated and ctx.options.faults_rules:
            self.rules_path = Path(ctx.options.faults_rules)
        if "faults_stats" in updated and ctx.options.faults_stats:
            self.stats_path = Path(ctx.options.faults_stats)
        self._reload()

    def running(self):
        self._write_stats(ready=True)

    # ---- the rules file ----------------------------------------------------------------------------------
    def _reload(self) -> None:
        if self.rules_path is None:
            return
        try:
            mtime = self.rules_path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == self._mtime_ns:
            return
        self._mtime_ns = mtime
        try:
            text = self.rules_path.read_text() if mtime else ""
            self.plan = FaultPlan.from_json(text)
            self._write_stats(ready=True)
        except (OSError, RulesError) as exc:
            # A bad file stops every injection (rather than keeping stale rules) and says why in the stats.
            self.plan = FaultPlan()
            self._write_stats(ready=True, error=str(exc))
            log.error("faultproxy: %s", exc)

    def _write_stats(self, ready: bool, error: str = "") -> None:
        if self.stats_path is None:
            return
        stats = {**self.plan.stats(), "ready": ready, "error": error, "pid": os.getpid()}
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats, sort_keys=True))
        tmp.replace(self.stats_path)

    # ---- requests ----------------------------------------------------------------------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._reload()
        request = flow.request
        if request.host not in LOOPBACK:
            flow.response = http.Response.make(403, b"faultproxy forwards to loopback addresses only\n")
            return
        service = self.plan.service_of(request.host, request.port)
        decision = self.plan.decide(service, request.method, request.path.split("?", 1)[0], time.time())
        flow.metadata["fault"] = decision
        rule = decision.rule
        if rule is None:
            if decision.delay_s:
                self._write_stats(ready=True)
            return
        self._write_stats(ready=True)
        if rule.action == "reset" and rule.after_bytes is None:
            _reset(flow)  # nothing reached the service; the client is still sending its body
            flow.kill()
        elif rule.action == "reset":
            flow.request.stream = _cut_after(flow, rule.after_bytes)

    async def request(self, flow: http.HTTPFlow) -> None:
        decision = flow.metadata.get("fault")
        if decision is None or flow.response is not None:
            return
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        rule = decision.rule
        if rule is None or rule.action == "reset":
            return
        if rule.action == "stall":
            # Held until its time is up or the rules change (a test lifting the stall), then dropped unanswered.
            plan, until = self.plan, time.monotonic() + decision.stall_s
            while time.monotonic() < until and self.plan is plan:
                await asyncio.sleep(min(0.5, until - time.monotonic()))
                self._reload()
            flow.kill()
            return
        headers = {"Content-Type": "application/json"}
        if rule.retry_after is not None:
            headers["Retry-After"] = f"{rule.retry_after:g}"
        flow.response = http.Response.make(rule.status, rule.error_body(), headers)


def _reset(flow: http.HTTPFlow) -> None:
    """Abort the flow's client and server connections with a TCP reset (SO_LINGER 0), as a load balancer
    dropping a connection does. Reaches into mitmproxy's connection handler (version pinned in
    requirements.txt); should that change, the flow is only killed (the client sees a closed connection)."""
    from mitmproxy import ctx

    try:
        handler = ctx.master.addons.get("proxyserver").connections[flow.client_conn.id]
        transports = [handler.transports[c] for c in (flow.client_conn, flow.server_conn) if c in handler.transports]
    except (AttributeError, KeyError) as exc:
        log.warning("faultproxy: cannot reset the connection (%s); killing the flow instead", exc)
        flow.kill()
        return
    for transport in transports:
        writer = transport.writer
        sock = writer.get_extra_info("socket") if writer is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if writer is not None:
            writer.transport.abort()


def _cut_after(flow: http.HTTPFlow, limit: int):
    """A request body stream that forwards `limit` bytes to the service, then resets both connections."""
    sent = 0

    def stream(chunk: bytes) -> bytes:
        nonlocal sent
        if sent >= limit:
            return b""
        if sent + len(chunk) >= limit:
            chunk = chunk[: limit - sent]
            asyncio.get_running_loop().call_later(0.2, _reset, flow)  # once this last piece is sent
        sent += len(chunk)
        return chunk

    return stream


addons = [FaultInjector()]
