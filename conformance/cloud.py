"""The cloud layer: the one place that opens openstacksdk connections or otherwise talks to the API (the raw TLS
handshake of R7 is conformance.tls; flavor policy is conformance.flavors).

    cloud = open_cloud("openstackzuul", region="RegionOne", role="zuul")   # BadInput on a bad clouds.yaml
    cloud.call(cloud.conn.compute.get_limits)                             # with the retry policy
    cloud.calls                                                           # every HTTP response, timed

Every secret the layer learns (passwords, application-credential secrets, tokens) is registered with
conformance.redact before anything can print it.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
import urllib3
import yaml
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.session import TCPKeepAliveAdapter

from conformance import interrupt
from conformance.errors import BadInput
from conformance.flavors import FlavorInfo
from conformance.redact import SECRET_KEYS, redact, register_secret
from conformance.results import CallRecord, RetryRecord, path_template
from conformance.tls import TlsInfo, probe_tls

RETRY_STATUSES = frozenset({429, 502, 503, 504})
ROLES = ("zuul", "ci")
# Per-call timeout (connect and each read) when the profile gives none (`python -m conformance cleanup`).
DEFAULT_API_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------------------- retries
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; the total (attempts and waits) never exceeds max_total_s."""

    max_attempts: int = 6
    max_total_s: float = 60.0
    initial_wait_s: float = 0.5
    max_wait_s: float = 10.0
    jitter_s: float = 0.5


DEFAULT_POLICY = RetryPolicy()
# Session start: bad input must be reported within a few seconds, so only a short retry for real flukes.
STARTUP_POLICY = RetryPolicy(max_attempts=2, max_total_s=4.0, initial_wait_s=0.2, max_wait_s=1.0, jitter_s=0.1)


class RetryableResponse(Exception):
    """A raw response with a retryable status (raised inside Cloud.request so tenacity sees it)."""

    def __init__(self, response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class Busy(RetryableResponse):
    """The cloud said "not now" in its own words (e.g. Glance's 409 while it undoes a broken upload): retried
    like a 503, whatever the status."""


def _status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "http_status"):
        status = getattr(exc, attr, None)
        if isinstance(status, int):
            return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """429/502/503/504 and failures to connect; never TLS errors, never other HTTP statuses."""
    if isinstance(exc, (ksa_exc.SSLError, requests.exceptions.SSLError, ssl.SSLError)):
        return False
    if isinstance(
        exc,
        (
            Busy,
            ksa_exc.ConnectFailure,
            ksa_exc.ConnectTimeout,
            ksa_exc.RetriableConnectionFailure,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            ConnectionError,
        ),
    ):
        return True
    return _status_of(exc) in RETRY_STATUSES


def retry_after_seconds(exc: BaseException, now: float | None = None) -> float | None:
    """The server's Retry-After (seconds or an HTTP date) from the exception's response, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retrying(
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """A tenacity Retrying for one logical call. `sleep` and `clock` are injectable for tests; `before_sleep`
    sees every retry (the cloud layer counts them for the report)."""
    start = clock()
    backoff = tenacity.wait_exponential_jitter(
        multiplier=policy.initial_wait_s, max=policy.max_wait_s, jitter=policy.jitter_s
    )

    def wait(state: tenacity.RetryCallState) -> float:
        computed = backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        server_says = retry_after_seconds(exc) if exc is not None else None
        # The server's Retry-After is a floor: retrying earlier only earns another 429/503.
        return max(computed, server_says) if server_says is not None else computed

    def stop(state: tenacity.RetryCallState) -> bool:
        # Runs after wait(): stop now if the next wait would take us past the total budget.
        elapsed = clock() - start
        return (
            state.attempt_number >= policy.max_attempts or elapsed + (state.upcoming_sleep or 0.0) > policy.max_total_s
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )


_URL_IN_TEXT = re.compile(r"https?://[^\s,:;]+(?::\d+)?[^\s,;]*")


def failed_request(exc: BaseException) -> tuple[str, str]:
    """(method, url) of the request behind an API exception, as far as the exception tells."""
    response = getattr(exc, "response", None)
    request = getattr(response, "request", None) or getattr(exc, "request", None)
    method = getattr(exc, "method", None) or getattr(request, "method", None) or ""
    url = getattr(exc, "url", None) or getattr(request, "url", None) or ""
    if not url:  # keystoneauth's connection errors name the URL in their message only
        found = _URL_IN_TEXT.search(str(exc))
        url = found.group(0).rstrip(".:") if found else ""
    return str(method).upper(), str(url)


def failure_reason(exc: BaseException) -> str:
    """Why an attempt failed, in the words the report groups retries by: `HTTP 503`, `timeout`,
    `connection reset`, `connection refused`, `connection error`."""
    status = _status_of(exc)
    if status is not None:
        return f"HTTP {status}"
    text = str(exc).lower()
    if isinstance(exc, (ksa_exc.ConnectTimeout, requests.exceptions.Timeout, TimeoutError)) or "timed out" in text:
        return "timeout"
    if "refused" in text:
        return "connection refused"
    if any(word in text for word in ("reset", "remotedisconnected", "closed connection", "aborted", "broken pipe")):
        return "connection reset"
    return "connection error"


def api_error_text(exc: BaseException) -> str | None:
    """One line quoting an API failure (`GET /v2.1/flavors/detail: HTTP 503 (gave up after 6 attempts):
    ...`), or None when `exc` is not the cloud's API failing."""
    from openstack import exceptions as sdk_exc

    api_errors = (sdk_exc.HttpException, ksa_exc.HttpError, ksa_exc.ConnectionError, requests.RequestException)
    if not isinstance(exc, api_errors) and not (isinstance(exc, sdk_exc.SDKException) and is_retryable(exc)):
        return None
    method, url = failed_request(exc)
    where = f"{method} {path_template(url)}".strip() if url else "an API call"
    attempts = getattr(exc, "conformance_attempts", 0)
    tries = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
    message = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:300]
    return f"{where}: {failure_reason(exc)}{tries}: {message}"


# ------------------------------------------------------------------------------------------- endpoint outages
@dataclass(frozen=True)
class Outage:
    """An endpoint the run cannot use: `text` says which and why, naming the endpoint (and the timeout, or the
    fix). `from_start`: found before any check ran (Keystone's certificate not trusted), so nothing of the run
    ever went through it, not even its cleanup."""

    service: str  # catalog type ("compute"); "identity" for Keystone
    url: str  # the endpoint: its catalog URL, or Keystone's root
    text: str
    from_start: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "url": self.url, "text": self.text, "from_start": self.from_start}


class EndpointDown(Exception):
    """A call to an endpoint marked as an Outage: raised at once, before anything is sent (or when the call
    itself found it stopped answering). The check is recorded as not measured, not failed."""

    def __init__(self, outage: Outage):
        super().__init__(outage.text)
        self.outage = outage


class Outages:
    """The endpoints found unusable in this run, each marked once (the first mark wins): every later call to
    one fails at once with EndpointDown instead of waiting out its own timeouts and retries. One per run and
    process (the plugin keeps it in the run's state; an xdist worker marks what it finds itself)."""

    def __init__(self, found: list[Outage] | None = None):
        self._lock = threading.Lock()
        self._found: dict[str, Outage] = {}
        for outage in found or []:
            self.mark(outage)

    def mark(self, outage: Outage) -> Outage:
        with self._lock:
            return self._found.setdefault(outage.url.rstrip("/"), outage)

    def find(self, url: str) -> Outage | None:
        with self._lock:
            found = list(self._found.items())
        for prefix, outage in found:
            if url == prefix or url.startswith(prefix + "/") or url.startswith(prefix + "?"):
                return outage
        return None

    def all(self) -> list[Outage]:
        with self._lock:
            return list(self._found.values())


# ------------------------------------------------------------------------------------ abortable HTTP calls
class _InFlight:
    """The connections requests are waiting on, by thread. A stop request (SIGINT, SIGTERM, the deadline) shuts
    the sockets of the calls that began before it, so a call the cloud never answers ends at once instead of
    after api.timeout_s (the stop request's safe point then ends it without a retry; a cleanup's call, shielded,
    is retried). The calls a cleanup makes after the stop request are left alone, and so is a create (POST,
    PATCH) once sent: the cloud may carry it out anyway, and its answer is what lets the run delete it."""

    KEEP = frozenset({"POST", "PATCH"})

    def __init__(self):
        self._lock = threading.Lock()
        # connection -> (thread id, when its request began, its method: None while connecting)
        self._busy: dict[Any, tuple[int, float, str | None]] = {}

    def add(self, conn, method: str | None = None) -> None:
        with self._lock:
            _thread, began, known = self._busy.get(conn, (0, time.monotonic(), None))
            # http connects inside request(): the method said first stays
            self._busy[conn] = (threading.get_ident(), began, method or known)

    def release_thread(self) -> None:
        me = threading.get_ident()
        with self._lock:
            for conn in [c for c, (thread, _began, _method) in self._busy.items() if thread == me]:
                del self._busy[conn]

    def abort(self, began_before: float = float("inf")) -> int:
        with self._lock:
            conns = [
                conn
                for conn, (_thread, began, method) in self._busy.items()
                if began < began_before and (method or "").upper() not in self.KEEP
            ]
        aborted = 0
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown: SSLSocket.shutdown would also drop its SSL object under the
                # thread reading it. The blocked read returns at once (EOF).
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
                aborted += 1
        return aborted


IN_FLIGHT = _InFlight()


class _Abortable:
    """A urllib3 connection that says when a request starts waiting on it (connect, send, then the answer)."""

    def connect(self):
        IN_FLIGHT.add(self)
        return super().connect()

    def request(self, method, *args, **kwargs):
        IN_FLIGHT.add(self, method)
        return super().request(method, *args, **kwargs)


class _HTTPConnection(_Abortable, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Abortable, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class GuardedAdapter(TCPKeepAliveAdapter):
    """keystoneauth's adapter (keep-alive, no Nagle) with the run's outages checked before anything is sent, and
    its connections abortable by a stop request. Mounted on every connection's session by open_cloud."""

    def __init__(self, outages: Outages, **tls):
        super().__init__(**tls)
        self.outages = outages

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # an http(s) proxy; SOCKS keeps its own pools
            manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(self, request, *args, **kwargs):
        outage = self.outages.find(request.url or "")
        # A cleanup still tries an endpoint that stopped answering (what it created may be deleted after all),
        # not one that was never usable.
        if outage is not None and (outage.from_start or not interrupt.is_shielded()):
            raise EndpointDown(outage)
        try:
            response = super().send(request, *args, **kwargs)
            if not kwargs.get("stream"):
                response.content  # noqa: B018 - the body is read while a stop request can still abort it
            return response
        finally:
            IN_FLIGHT.release_thread()


# A call under way when the run is asked to stop gets this long to end on its own (an answer on its way, a server
# create the burst must not count as never sent); one still waiting then is aborted.
STOP_GRACE_S = 1.5
_abort_listener: list = []


def _abort_on_stop(_stop) -> None:
    timer = threading.Timer(STOP_GRACE_S, IN_FLIGHT.abort, args=(time.monotonic(),))
    timer.daemon = True
    timer.start()


def _listen_for_stop() -> None:
    """Once per process: a stop request aborts the calls still in flight after STOP_GRACE_S."""
    with _LISTEN_LOCK:
        if not _abort_listener:
            _abort_listener.append(interrupt.add_listener(_abort_on_stop))


_LISTEN_LOCK = threading.Lock()


def untrusted_keystone(url: str, names: list[str], cacert: str | None, detail: str) -> Outage:
    """The one line for Keystone's certificate failing verification, naming the fix in clouds.yaml."""
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    which = f"cloud {names[0]}" if len(names) == 1 else f"clouds {' and '.join(names)}"
    why = f" ({detail})" if detail else ""
    if cacert:
        fix = (
            f"the CA file {cacert} that {which} names as `cacert` in clouds.yaml does not verify it: name the "
            f"CA that signed it there (or fix the certificate)"
        )
    else:
        fix = f"add `cacert: /path/to/ca.pem` to {which} in clouds.yaml (or fix the CA)"
    return Outage(
        "identity", root.rstrip("/"), f"Keystone's certificate at {root} is not trusted{why}: {fix}", from_start=True
    )


# ------------------------------------------------------------------------------------------- call records
class CallLog:
    """Every call record of this process, so the plugin can attach each test's calls to its report."""

    def __init__(self):
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []
        self._drained = 0

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)

    def drain(self) -> list[CallRecord]:
        """The records added since the last drain."""
        with self._lock:
            new = self._records[self._drained :]
            self._drained = len(self._records)
        return new


CALL_LOG = CallLog()
RETRY_LOG = CallLog()  # RetryRecords, drained the same way


# -------------------------------------------------------------------------------------------- clouds.yaml
def clouds_yaml_candidates() -> list[Path]:
    from openstack.config import loader

    env = os.environ.get("OS_CLIENT_CONFIG_FILE")
    return ([Path(env)] if env else []) + [Path(p) for p in loader.CONFIG_FILES]


def find_clouds_yaml() -> Path:
    """The clouds.yaml openstacksdk would read, checked to exist and parse (openstacksdk skips bad files)."""
    env = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if env and not Path(env).is_file():
        raise BadInput(f"clouds.yaml not found: OS_CLIENT_CONFIG_FILE={env} does not exist")
    for path in clouds_yaml_candidates():
        if path.is_file():
            break
    else:
        looked = ", ".join(str(p) for p in clouds_yaml_candidates())
        raise BadInput(f"no clouds.yaml found (looked in {looked}; set OS_CLIENT_CONFIG_FILE)")
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix != ".json" else __import__("json").loads(text)
    except OSError as exc:
        raise BadInput(f"clouds.yaml {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise BadInput(f"clouds.yaml {path} is not valid YAML{at}: {problem}") from None
    except ValueError as exc:
        raise BadInput(f"clouds.yaml {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clouds"), dict):
        raise BadInput(f"clouds.yaml {path} has no 'clouds:' mapping")
    return path


@contextlib.contextmanager
def _quiet_sdk():
    """Mute the client libraries' import-time deprecation chatter and their log lines on stderr (a failed
    discovery is logged there before we turn it into one clear line); pytest's log capture still sees them."""
    for name in ("keystoneauth", "openstack", "stevedore"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        try:
            from openstack import warnings as sdk_warnings

            warnings.simplefilter("ignore", sdk_warnings.OpenStackDeprecationWarning)
        except (ImportError, AttributeError):
            pass
        yield


def _config(path: Path):
    with _quiet_sdk():
        from openstack.config import loader

        return loader.OpenStackConfig(config_files=[str(path)], app_name="opendev-conformance")


def cloud_regions(name: str) -> list[str]:
    """Regions the clouds.yaml entry names (`regions:` or `region_name:`); [""] when it names none."""
    path = find_clouds_yaml()
    config = _config(path)
    if name not in config.get_cloud_names():
        known = ", ".join(sorted(config.get_cloud_names())) or "none"
        raise BadInput(f"cloud {name!r} is not in {path} (clouds there: {known})")
    regions = [r.get("name") or "" for r in config._get_regions(name)]
    return regions or [""]


def _cloud_region(name: str, region: str | None, timeout: float | None):
    from openstack import exceptions as sdk_exc

    path = find_clouds_yaml()
    config = _config(path)
    if name not in config.get_cloud_names():
        known = ", ".join(sorted(config.get_cloud_names())) or "none"
        raise BadInput(f"cloud {name!r} is not in {path} (clouds there: {known})")
    kwargs = {"api_timeout": timeout} if timeout else {}
    try:
        return config.get_one(cloud=name, region_name=region or None, **kwargs)
    except (sdk_exc.ConfigException, ksa_exc.ClientException, KeyError, ValueError) as exc:
        raise BadInput(f"cloud {name!r} in {path}: {redact(str(exc)).splitlines()[0]}") from None


def _register_config_secrets(config: dict[str, Any]) -> None:
    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if str(key).lower() in SECRET_KEYS and isinstance(item, str):
                    register_secret(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config)


# ------------------------------------------------------------------------------------- version documents
@dataclass(frozen=True)
class VersionDocument:
    url: str  # where it was found ("" when nowhere)
    versions: list[str]  # ["v2.1 CURRENT", ...]
    tried: list[str]  # "GET url -> status" per attempt

    @property
    def found(self) -> bool:
        return bool(self.versions)


def _version_candidates(url: str, project_id: str | None) -> list[str]:
    parts = urlsplit(url.rstrip("/"))
    root = f"{parts.scheme}://{parts.netloc}"
    segments = [s for s in parts.path.split("/") if s]
    candidates = [url.rstrip("/") + "/"]
    if project_id and project_id in segments:
        candidates.append(root + "/" + "/".join(segments[: segments.index(project_id)]) + "/")
    versioned = [i for i, s in enumerate(segments) if re.fullmatch(r"v\d+(\.\d+)?", s)]
    if versioned:
        candidates.append(root + "/" + "/".join(segments[: versioned[0]]))
    candidates.append(root + "/")
    unique = []
    for candidate in candidates:
        if candidate not in unique:
            unique.append(candidate)
    return unique


# ------------------------------------------------------------------------------------------------- Cloud
def _explain_connection_error(exc: BaseException, url: str) -> str:
    text = str(exc)
    host = urlsplit(url).hostname or url
    if re.search(
        r"Name or service not known|NameResolutionError|nodename nor servname|"
        r"Temporary failure in name resolution|No address associated",
        text,
    ):
        return f"host name {host} does not resolve"
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return f"connection refused by {urlsplit(url).netloc}"
    if isinstance(exc, (ksa_exc.ConnectTimeout, requests.exceptions.Timeout)) or "timed out" in text.lower():
        return f"no answer from {urlsplit(url).netloc} (timed out)"
    return redact(text.splitlines()[0]) if text else type(exc).__name__


@dataclass
class Cloud:
    """One openstacksdk connection: a clouds.yaml entry in one region, for one role."""

    name: str
    region: str
    role: str
    conn: Any
    config: Any  # openstack.config.cloud_region.CloudRegion
    policy: RetryPolicy = DEFAULT_POLICY
    calls: list[CallRecord] = field(default_factory=list)
    retries: list[RetryRecord] = field(default_factory=list)
    # Injectable for tests; a retry's back-off ends at once when the run is asked to stop.
    sleep: Callable[[float], None] = field(default=interrupt.wait, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    # The run's endpoints found unusable (shared by every connection of the run in this process).
    outages: Outages = field(default_factory=Outages, repr=False)
    timeout: float | None = None  # each call's connect and read timeout (the profile's api.timeout_s)
    _endpoints: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _flavors: list[FlavorInfo] | None = field(default=None, repr=False)

    # ---- identity of this connection
    @property
    def scope(self) -> str:
        return f"{self.role}/{self.region or 'default'}"

    @property
    def auth_url(self) -> str:
        config = getattr(self.config, "config", None) or {}  # None in tests that fake the connection
        return str(config.get("auth", {}).get("auth_url") or "")

    @property
    def cacert(self) -> str | None:
        return self.config.config.get("cacert")

    @property
    def tls_verify(self) -> bool:
        config = self.config.config
        return bool(config.get("verify", True)) and not config.get("insecure", False)

    @property
    def interface(self) -> str:
        return self.config.get_interface() or "public"

    # ---- calls
    def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run fn with the retry policy (429/502/503/504 and connection errors; bounded total time). Every
        retry, and a call given up after its retries, is recorded for the report (`retries`, RETRY_LOG). A safe
        point (conformance.interrupt): no call starts once the run was asked to stop."""
        interrupt.check()
        retryer = retrying(self.policy, sleep=self.sleep, clock=self.clock, before_sleep=self._note_retry)

        def attempt():
            try:
                return fn(*args, **kwargs)
            except Exception:
                # Asked to stop while this call was under way (the stop closed its connection): stop, not retry.
                interrupt.check()
                raise

        try:
            return retryer(attempt)
        except Exception as exc:
            if is_retryable(exc):
                attempts = int(retryer.statistics.get("attempt_number", 1))
                with contextlib.suppress(AttributeError):  # the report quotes how hard the suite tried
                    exc.conformance_attempts = attempts
                self._note(exc, attempt=attempts, wait_s=0.0, gave_up=True)
                outage = self._outage_of(exc, attempts)
                if outage is not None:
                    raise EndpointDown(outage) from exc
            raise

    def _outage_of(self, exc: BaseException, attempts: int) -> Outage | None:
        """The endpoint behind a call that got no answer even after its retries, marked for the rest of the run
        (once: a later mark of the same endpoint returns the first). None when the cloud did answer (an HTTP
        status: that is a finding, not an outage) or the URL is unknown."""
        why = failure_reason(exc)
        _method, url = failed_request(exc)
        if why.startswith("HTTP") or not url:
            return None
        service = self._service_of(url) or "the"
        endpoint = next((prefix for prefix, _type in self._endpoints if url.startswith(prefix)), "")
        if not endpoint:
            parts = urlsplit(url)
            endpoint = f"{parts.scheme}://{parts.netloc}"
        if why == "timeout" and self.timeout:
            why = f"no answer in {self.timeout:.0f} s"
        tries = f"{attempts} {'try' if attempts == 1 else 'tries'}"
        text = f"{service} endpoint {endpoint} stopped answering ({why}, {tries})"
        return self.outages.mark(Outage(service, endpoint, text))

    def _note_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            self._note(exc, attempt=state.attempt_number, wait_s=state.upcoming_sleep or 0.0)

    def _note(self, exc: BaseException, *, attempt: int, wait_s: float, gave_up: bool = False) -> None:
        method, url = failed_request(exc)
        record = RetryRecord(
            service=self._service_of(url) if url else "",
            method=method,
            path=path_template(url) if url else "",
            reason=failure_reason(exc),
            attempt=attempt,
            wait_s=round(wait_s, 3),
            scope=self.scope,
            gave_up=gave_up,
        )
        self.retries.append(record)
        RETRY_LOG.add(record)

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """A raw authenticated request through the connection's session; retried like `call`; never raises
        for an HTTP status (the last response is returned)."""
        kwargs.setdefault("headers", {}).setdefault("Accept", "application/json")

        def once():
            response = self.conn.session.request(url, method, raise_exc=False, **kwargs)
            if response.status_code in RETRY_STATUSES:
                raise RetryableResponse(response)
            return response

        try:
            return self.call(once)
        except RetryableResponse as exc:
            return exc.response

    def _on_response(self, response, *args, **kwargs) -> None:
        request = response.request
        url = getattr(request, "url", "") or ""
        seconds = response.elapsed.total_seconds() if response.elapsed else 0.0
        record = CallRecord(
            method=getattr(request, "method", "") or "",
            path=path_template(url),
            status=response.status_code,
            seconds=round(seconds, 4),
            service=self._service_of(url),
            scope=self.scope,
            started=round(time.time() - seconds, 3),
        )
        self.calls.append(record)
        CALL_LOG.add(record)

    def _service_of(self, url: str) -> str:
        # Calls made through openstacksdk authenticate without going through access(): use the session's token.
        self._learn_endpoints(getattr(self.conn.session.auth, "auth_ref", None))
        for prefix, service_type in self._endpoints:
            if url.startswith(prefix):
                return service_type
        if self.auth_url and url.startswith(self.auth_url.rstrip("/").rsplit("/v3", 1)[0]):
            return "identity"
        return ""

    # ---- authentication and the catalog
    def access(self):
        """The token's AccessInfo (authenticates on first use; the token is registered as a secret)."""
        session = self.conn.session
        access = self.call(session.auth.get_access, session)
        register_secret(access.auth_token)
        self._learn_endpoints(access)
        return access

    def _learn_endpoints(self, access) -> None:
        """Remember the catalog's endpoint URLs (longest first) to name the service of each recorded call."""
        if access is not None and not self._endpoints:
            self._endpoints = sorted(
                (
                    (e["url"].rstrip("/"), s.get("type", ""))
                    for s in access.service_catalog.catalog or []
                    for e in s.get("endpoints", [])
                    if e.get("url")
                ),
                key=lambda pair: -len(pair[0]),
            )

    def authenticate(self) -> None:
        self.access()

    @property
    def project_id(self) -> str:
        return self.access().project_id or ""

    @property
    def project_name(self) -> str:
        return self.access().project_name or ""

    def role_names(self) -> list[str]:
        return list(self.access().role_names or [])

    def catalog_regions(self) -> set[str]:
        catalog = self.access().service_catalog.catalog or []
        regions = {e.get("region_id") or e.get("region") for s in catalog for e in s.get("endpoints", [])}
        return regions - {None}

    def endpoint(self, service_type: str) -> str | None:
        """The catalog URL of service_type for this region and interface, or None."""
        catalog = self.access().service_catalog
        try:
            return catalog.url_for(service_type=service_type, interface=self.interface, region_name=self.region or None)
        except ksa_exc.EndpointNotFound:
            return None

    def facts(self, regions: list[str] | None = None) -> dict[str, Any]:
        """Public facts about this connection for the report: never a secret."""
        access = self.access()
        return {
            "cloud": self.name,
            "auth_url": self.auth_url,
            "regions": list(regions if regions is not None else [self.region]),
            "username": access.username,  # a name, not a secret: part of OpenDev's public clouds.yaml
            "project_name": access.project_name,
            "project_id": access.project_id,
            "project_domain": access.project_domain_name or access.project_domain_id,
            "user_domain": access.user_domain_name or access.user_domain_id,
            "interface": self.interface,
            "identity_api_version": str(self.config.get_api_version("identity") or ""),
            "compute_api_version": str(self.config.get_api_version("compute") or ""),
            "tls_verify": self.tls_verify,
        }

    # ---- version documents
    def version_document(self, url: str) -> VersionDocument:
        """GET the service's version document: the endpoint itself, then without the project id, then the
        unversioned root (where each service publishes it differs)."""
        tried = []
        for candidate in _version_candidates(url, self.project_id):
            response = self.request("GET", candidate)
            tried.append(f"GET {candidate} -> {response.status_code}")
            if response.status_code not in (200, 300):
                continue
            try:
                body = response.json()
            except ValueError:
                continue
            versions = [body["version"]] if isinstance(body.get("version"), dict) else body.get("versions")
            if isinstance(versions, dict):  # keystone: {"versions": {"values": [...]}}
                versions = versions.get("values")
            if isinstance(versions, list) and versions:
                ids = [f"{v.get('id')} {v.get('status', '')}".strip() for v in versions if isinstance(v, dict)]
                return VersionDocument(url=candidate, versions=ids, tried=tried)
        return VersionDocument(url="", versions=[], tried=tried)

    # ---- TLS
    def probe_keystone_tls(self, min_version: str = "1.2", timeout: float = 5.0) -> TlsInfo:
        return probe_tls(self.auth_url, cafile=self.cacert, min_version=min_version, timeout=timeout)

    # ---- flavors
    def flavors(self) -> list[FlavorInfo]:
        """Flavors visible to this project (cached per connection)."""
        if self._flavors is None:
            found = self.call(lambda: list(self.conn.compute.flavors(details=True)))
            self._flavors = [
                FlavorInfo(
                    id=f.id,
                    name=f.name,
                    vcpus=int(f.vcpus or 0),
                    ram_mb=int(f.ram or 0),
                    disk_gb=int(f.disk or 0),
                )
                for f in found
            ]
        return self._flavors

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # closing is best effort; nothing to report
            pass


def open_cloud(
    name: str,
    region: str | None = None,
    role: str = "zuul",
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    timeout: float | None = None,
    outages: Outages | None = None,
) -> Cloud:
    """Open (without network traffic yet) a connection to clouds.yaml entry `name` in `region`. `outages`: the
    run's endpoints found unusable, shared by its connections (a new, empty set when not given)."""
    with _quiet_sdk():
        import openstack.connection

        cloud_region = _cloud_region(name, region, timeout)
        _register_config_secrets(cloud_region.config)
        conn = openstack.connection.Connection(config=cloud_region)
    cloud = Cloud(
        name=name,
        region=region or cloud_region.region_name or "",
        role=role,
        conn=conn,
        config=cloud_region,
        policy=policy,
        outages=outages if outages is not None else Outages(),
        timeout=timeout,
    )
    session = conn.session.session
    session.hooks["response"].append(cloud._on_response)
    replaced = session.get_adapter("https://")  # keystoneauth's: its TLS settings (clouds.yaml) carry over
    adapter = GuardedAdapter(
        cloud.outages,
        **{
            key: getattr(replaced, key)
            for key in ("tls_ciphers", "tls_min_version")
            if getattr(replaced, key, None) is not None
        },
    )
    for scheme in ("https://", "http://"):
        session.mount(scheme, adapter)
    _listen_for_stop()
    return cloud


def check_access(cloud: Cloud, where: str | None = None, reach_timeout: float = 3.0) -> None:
    """Authenticate now; anything that stops the run becomes a one-line BadInput. Keystone's certificate not
    verifying is no bad input but the cloud failing R7: EndpointDown with the outage (`from_start`, its text
    naming the fix), which the run marks so that every other check is recorded as not measured at once.

    One unauthenticated GET of the auth_url first, bounded by `reach_timeout` and not retried, so an
    unreachable Keystone is reported within seconds (authentication would otherwise wait out discovery and
    the token request one after the other)."""
    url = cloud.auth_url
    where = where or f"cloud {cloud.name!r}"
    if not url:
        raise BadInput(f"{where}: clouds.yaml gives no auth_url")
    try:
        _access_now(cloud, url, where, reach_timeout)
    except (ksa_exc.SSLError, requests.exceptions.SSLError) as exc:
        raise _untrusted(cloud, exc, reach_timeout) from None
    except (
        ksa_exc.ConnectFailure,
        ksa_exc.ConnectTimeout,
        ksa_exc.ConnectionError,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
    ) as exc:
        if "SSL" in str(exc) or "CERTIFICATE" in str(exc):
            raise _untrusted(cloud, exc, reach_timeout) from None
        why = _explain_connection_error(exc, url)
        raise BadInput(f"{where}: cannot reach Keystone at {url}: {why}") from None


def _untrusted(cloud: Cloud, exc: BaseException, timeout: float) -> EndpointDown:
    """Keystone's certificate did not verify: the handshake of R7 says why in a few words. `fix` (cacert,
    detail) lets a caller say it once for several clouds.yaml entries (untrusted_keystone)."""
    info = cloud.probe_keystone_tls(timeout=timeout)
    detail = info.error.removeprefix("certificate verification failed: ") if info.error else ""
    if not detail:
        detail = redact(str(exc).splitlines()[0])[:160] if str(exc) else type(exc).__name__
    down = EndpointDown(untrusted_keystone(cloud.auth_url, [cloud.name], cloud.cacert, detail))
    down.fix = (cloud.cacert, detail)
    return down


def _access_now(cloud: Cloud, url: str, where: str, reach_timeout: float) -> None:
    """Reach and authenticate; connection trouble (TLS included) is left to check_access."""
    try:
        cloud.conn.session.get(url, authenticated=False, raise_exc=False, timeout=reach_timeout)
        cloud.authenticate()
    except (
        ksa_exc.SSLError,
        requests.exceptions.SSLError,
        ksa_exc.ConnectFailure,
        ksa_exc.ConnectTimeout,
        ksa_exc.ConnectionError,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
    ):
        interrupt.check()  # a stop request closed the connection: that, not Keystone, ended the call
        raise
    except ksa_exc.Unauthorized:
        raise BadInput(
            f"{where}: authentication failed (401 from {url}): check username, password, "
            f"project and domains in clouds.yaml"
        ) from None
    except ksa_exc.DiscoveryFailure as exc:
        raise BadInput(
            f"{where}: Keystone at {url} did not answer a usable version document: {redact(str(exc)).splitlines()[0]}"
        ) from None
    except ksa_exc.MissingRequiredOptions as exc:
        why = redact(str(exc)).splitlines()[0]
        raise BadInput(f"{where}: clouds.yaml auth is incomplete: {why}") from None
    except ksa_exc.HttpError as exc:
        raise BadInput(
            f"{where}: Keystone at {url} answered {exc.http_status}: {redact(str(exc)).splitlines()[0]}"
        ) from None
    except ksa_exc.ClientException as exc:
        raise BadInput(f"{where}: {redact(str(exc)).splitlines()[0]}") from None
