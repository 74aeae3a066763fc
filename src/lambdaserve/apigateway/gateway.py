"""The gateway's core: ``Gateway.handle(Request) -> Response``, knowing nothing of HTTP.

For ``POST /{stage}/{model}/predict`` (and ``/predict_proba``) it does what API Gateway
does, in API Gateway's order: find the route (403 "Missing Authentication Token"
otherwise), check the size (413), the API key (403 "Forbidden"), the usage plan's quota
and throttle (429), pick the stage's version (the canary with its weight), build the
REST proxy event, invoke the function version, and turn its proxy response into the HTTP
response (502 when the function failed or answered something malformed, 504 when it
took longer than the integration timeout). Every response carries ``x-amzn-RequestId`` and
``x-amz-apigw-id`` (the event's ``extendedRequestId``), as API Gateway's do.

State comes from the store through ``Catalog``, refreshed whenever another process (the
CLI) commits, so pushes, promotions, keys, plans and capture rates take effect within a
second or two. A stage's capture rate reaches the handler as the stage variable
``lambdaserveCapture`` in the event, as ``deploy --capture`` sets it on AWS.
A stage follows its alias in the store only once the versions it newly names have run
INIT (``routes``): until then requests keep going to the versions it served, so a promotion
never makes callers wait for a cold start. A new stage, with nothing to keep serving, and a
version whose INIT failed, are followed at once (the failure is then what callers see).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdaserve.apigateway.errors import (
    EndpointTimeout,
    Forbidden,
    GatewayError,
    HeadersTooLarge,
    MissingAuthenticationToken,
    RequestTooLong,
)
from lambdaserve.apigateway.http import Request, Response
from lambdaserve.apigateway.proxy import error_response, proxy_to_http
from lambdaserve.apigateway.usage import UsageLimiter
from lambdaserve.functions.function import Function, Outcome
from lambdaserve.functions.logbook import LogBook
from lambdaserve.functions.metrics import Metrics
from lambdaserve.functions.series import LiveSignals, SeriesRecorder
from lambdaserve.functions.service import HandlerSpec, LambdaService
from lambdaserve.functions.settings import FunctionSettings
from lambdaserve.runtime.apigw import compact, expand, new_apigw_id
from lambdaserve.runtime.capture import STAGE_VARIABLE
from lambdaserve.runtime.events import MAX_PAYLOAD_BYTES
from lambdaserve.store import Alias, ApiKey, Store
from lambdaserve.store.catalog import Catalog

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
HINT_HEADER = "x-lambdaserve-hint"  # lambdaserve's own: which routes exist, beside AWS's 403
MAX_HINTED = 100  # distinct unknown routes told in serve's output, then no more
MAX_HEADER_BYTES = 10240  # API Gateway's limit on the request line and header values together


def header_size(request: Request) -> int:
    """The request line and header values, as API Gateway counts them against its 10 KB."""
    query = sum(len(k) + len(v) + 2 for k, values in request.query.items() for v in values)
    return len(request.method) + len(request.path) + query + sum(len(v) for v in request.headers.values())


# /explain is on every local model; on AWS where deploy --explain made it (the default with
# probabilities).
ROUTES = ("predict", "predict_proba", "explain")


@dataclass
class GatewaySettings:
    api_key_required: bool = True
    integration_timeout_s: float = 29.0
    function: FunctionSettings = field(default_factory=FunctionSettings)
    env_mode: str = "auto"
    stage: str = "test"  # the stage user handlers are served under
    handlers: list[HandlerSpec] = field(default_factory=list)
    domain_name: str = "127.0.0.1"
    warm: list[tuple[str, str]] = field(default_factory=list)  # (name, version) to INIT at start
    on_event: Callable[[dict[str, Any]], None] | None = None  # lifecycle events, for serve's output
    max_upload_mb: int = 200  # the console's model uploads (serve --max-upload-mb)


class Gateway:
    def __init__(
        self,
        store: Store,
        settings: GatewaySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings or GatewaySettings()
        self.catalog = Catalog(store)
        self.usage = UsageLimiter(store, clock, wall)
        self.rng = rng
        self.logs = LogBook(store.root)
        self.metrics = Metrics(LiveSignals(clock, wall))
        self.series = SeriesRecorder(self.metrics.live)
        self.lambdas = LambdaService(
            store,
            self.catalog,
            self.settings.function,
            self.logs,
            self.metrics,
            env_mode=self.settings.env_mode,
            handlers=self.settings.handlers,
            on_event=self.settings.on_event,
        )
        self.handlers = self.lambdas.handlers
        self._hinted: set[str] = set()
        # What requests follow: the store's aliases, each once its new versions are initialised.
        self.routes: dict[tuple[str, str], Alias] = dict(self.catalog.aliases)
        self._flips: dict[tuple[str, str], asyncio.Task[None]] = {}  # INIT before a flip, per version

    # -- lifecycle ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Before the event loop: start INIT of the versions to warm, so it overlaps start-up."""
        self.lambdas.prepare(self.settings.warm)

    async def start(self) -> None:
        await self.lambdas.start(self.settings.warm)

    @property
    def functions(self) -> dict[tuple[str, str], Function]:
        return self.lambdas.functions

    async def function(self, name: str, version: str) -> Function:
        return await self.lambdas.function(name, version)

    async def close(self) -> None:
        for task in list(self._flips.values()):
            task.cancel()
        await self.lambdas.close()
        self.usage.flush()
        self.logs.flush()

    def refresh(self, force: bool = False) -> None:
        """Reload the store's state if it changed (``force``: even if not), and follow it."""
        self.catalog.refresh(force)
        self._follow_aliases()

    def _follow_aliases(self) -> None:
        """Point each stage at its alias in the store once the alias's new versions are initialised."""
        for stage_key in [k for k in self.routes if k not in self.catalog.aliases]:
            del self.routes[stage_key]  # rolled back past its first version: gone at once
        for stage_key, alias in self.catalog.aliases.items():
            current = self.routes.get(stage_key)
            if current == alias:
                continue
            cold = [
                v for v in _versions(alias) - _versions(current) if not self.lambdas.settled(alias.model, v)
            ]
            if current is None or not cold:
                self.routes[stage_key] = alias
                continue
            # INIT them in the background, with as many environments as the stage uses now;
            # the stage flips when they are ready.
            busy = self.lambdas.environments(alias.model, _versions(current))
            for version in cold:
                self._init_then_follow(alias.model, version, max(1, busy))

    def _init_then_follow(self, name: str, version: str, environments: int) -> None:
        if (name, version) in self._flips:
            return

        async def init() -> None:
            try:
                function = await self.function(name, version)
                wanted = max(environments, self.settings.function.provisioned)
                with contextlib.suppress(Exception):  # an INIT failure is logged, and settles it too
                    await function.warm_up(wanted)
            finally:
                self._flips.pop((name, version), None)
            self._follow_aliases()

        task = asyncio.get_running_loop().create_task(init())
        self._flips[(name, version)] = task

    async def following(self) -> None:
        """Wait until the stages follow the store: the INITs their flips wait on are done."""
        while self._flips:
            await asyncio.gather(*self._flips.values(), return_exceptions=True)

    def housekeeping(self, now: float | None = None) -> None:
        """Run every half second: pick up changes, write usage and logs, reap idle environments.

        ``now`` is the monotonic clock's reading; tests pass a later one instead of waiting.
        """
        self.refresh()
        self.usage.flush()
        self.logs.flush()
        self.series.maybe_sample(self.stage_routes())
        self.lambdas.reap(time.monotonic() if now is None else now, self.routed_versions())

    def routed_versions(self) -> set[tuple[str, str]]:
        routed = {(name, "$LATEST") for name in self.handlers}
        for alias in [*self.routes.values(), *self.catalog.aliases.values()]:
            routed |= {(alias.model, version) for version in _versions(alias)}
        return routed

    def stage_routes(self) -> dict[tuple[str, str], list[str]]:
        """(model, stage) -> the versions it sends requests to (its canary's too)."""
        routes: dict[tuple[str, str], list[str]] = {
            (name, self.settings.stage): ["$LATEST"] for name in self.handlers
        }
        for (model, stage), alias in self.routes.items():
            versions = [str(alias.version)]
            if alias.canary_version is not None:
                versions.append(str(alias.canary_version))
            routes[(model, stage)] = versions
        return routes

    # -- requests ----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        apigw_id = new_apigw_id()
        started = time.perf_counter()
        labels = ["", "", ""]  # model, stage, version: filled in as they become known
        counted: list[int] = []  # this request's number in the quota counts, once admitted
        try:
            response = await self._handle(request, (request_id, apigw_id), labels, counted)
        except GatewayError as exc:
            response = self._error(exc, request)
        if counted:  # its count reaches the store before its answer leaves
            self.usage.written(counted[0])
        response.headers["x-amzn-RequestId"] = request_id
        response.headers["x-amz-apigw-id"] = apigw_id
        model, stage, version = labels
        self.metrics.request(model, stage, version, response.status, time.perf_counter() - started)
        return response

    def refuse_early(self, request: Request, declared_length: int | None) -> Response | None:
        """The answer decided before the body is read, if there is one.

        An unknown route (403 Missing Authentication Token), request headers over API Gateway's
        10 KB, a body declared over its 10 MB (413 Request Too Long) and a missing or unknown
        API key (403 Forbidden) are answered without reading a byte of the body, so a large
        body costs neither memory nor credentials. The same checks run again in ``handle``.
        """
        request_id = str(uuid.uuid4())
        labels = ["", ""]
        try:
            stage, name, _route, _resource = self._route(request)
            labels[:] = [name, stage]
            if header_size(request) > MAX_HEADER_BYTES:
                raise HeadersTooLarge()
            if declared_length is not None and declared_length > MAX_BODY_BYTES:
                raise RequestTooLong()
            self._authenticate(request, stage)
        except GatewayError as exc:
            return self._refused(exc, request_id, labels[0], labels[1], request=request)
        return None

    def too_long(self, request: Request) -> Response:
        """413 for a body that went over the limit while it streamed in (chunked, or undeclared)."""
        labels = ["", ""]
        with contextlib.suppress(GatewayError):
            stage, name, _route, _resource = self._route(request)
            labels = [name, stage]
        return self._refused(RequestTooLong(), str(uuid.uuid4()), labels[0], labels[1])

    def _refused(
        self, exc: GatewayError, request_id: str, name: str, stage: str, request: Request | None = None
    ) -> Response:
        response = error_response(exc) if request is None else self._error(exc, request)
        response.headers["x-amzn-RequestId"] = request_id
        response.headers["x-amz-apigw-id"] = new_apigw_id()
        self.metrics.request(name, stage, "", response.status, 0.0)
        return response

    async def _handle(
        self, request: Request, ids: tuple[str, str], labels: list[str], counted: list[int]
    ) -> Response:
        request_id = ids[0]  # and ids[1], the x-amz-apigw-id, for the event
        stage, name, route, resource = self._route(request)
        labels[:2] = [name, stage]
        if header_size(request) > MAX_HEADER_BYTES:
            raise HeadersTooLarge()
        if len(request.body) > MAX_BODY_BYTES:
            raise RequestTooLong()
        key = self._authenticate(request, stage)
        if key is not None:
            try:
                number = self.usage.admit(key, self.catalog.plans.get(key.plan_id or ""))
            except GatewayError as exc:
                reason = "quota" if exc.status == 429 and exc.message == "Limit Exceeded" else "throttle"
                self.metrics.refuse(name, stage, reason)
                raise
            if number is not None:
                counted.append(number)
        version = self._version_for(name, stage)
        labels[2] = version
        function = await self.function(name, version)
        event = self._event(request, ids, stage, name, route, resource, key)
        if (
            len(request.body) + 2048 > MAX_PAYLOAD_BYTES
            and len(json.dumps(expand(event))) > MAX_PAYLOAD_BYTES
        ):
            raise RequestTooLong()
        # Past the integration timeout the caller gets 504, but the invocation goes on,
        # as in AWS: API Gateway stops waiting, Lambda does not stop running.
        pending = function.submit(event, request_id)
        timer = asyncio.get_running_loop().call_later(
            self.settings.integration_timeout_s, _stop_waiting, pending
        )
        try:
            outcome = await pending
        except _GaveUp:
            raise EndpointTimeout() from None
        finally:
            timer.cancel()
        if outcome.status == "throttled":
            self.metrics.refuse(name, stage, "concurrency")
        return proxy_to_http(outcome)

    def _error(self, exc: GatewayError, request: Request) -> Response:
        """AWS's error response; for an unknown route, plus a hint header naming the routes
        there are (AWS's body stays as it is: a client may depend on it)."""
        response = error_response(exc)
        if isinstance(exc, MissingAuthenticationToken):
            response.headers[HINT_HEADER] = hint = self.routes_hint(request)
            asked = f"{_printable(request.method)} {_printable(request.path)}"
            if asked not in self._hinted and len(self._hinted) < MAX_HINTED:
                self._hinted.add(asked)  # once per route asked for: a typo is worth one line
                if self.settings.on_event is not None:
                    self.settings.on_event({"event": "missing_route", "request": asked, "hint": hint})
        return response

    def routes_hint(self, request: Request) -> str:
        """Which routes exist: on the stage the path names, else on every stage."""
        stage = next((p for p in request.path.split("/") if p), "")
        routes = [
            f"{method} /{route_stage}/{model}{suffix}"
            for (model, route_stage), method, suffix in self._route_list()
            if route_stage == stage
        ]
        if routes:
            where = f"on stage {_printable(stage)}"
        else:
            routes = [f"{m} /{s}/{n}{x}" for (n, s), m, x in self._route_list()]
            where = "on any stage" if not routes else "(no such stage here)"
        listed = ", ".join(routes[:12]) + (f" and {len(routes) - 12} more" if len(routes) > 12 else "")
        asked = f"{_printable(request.method)} {_printable(request.path)}"
        return f"No {asked} {where}. Routes: {listed or 'none yet'}."[:1000]

    def _route_list(self) -> list[tuple[tuple[str, str], str, str]]:
        listed = []
        for (model, stage), alias in sorted(self.routes.items()):
            listed.append(((model, stage), "POST", "/predict"))
            if self._has_proba(model, str(alias.version)):
                listed.append(((model, stage), "POST", "/predict_proba"))
            listed.append(((model, stage), "POST", "/explain"))
        for name in sorted(self.handlers):
            listed.append(((name, self.settings.stage), "ANY", ""))
        return listed

    def _route(self, request: Request) -> tuple[str, str, str, str]:
        """(stage, function name, route, resource) or 403 Missing Authentication Token."""
        parts = [p for p in request.path.split("/") if p]
        if len(parts) >= 2 and parts[1] in self.handlers and parts[0] == self.settings.stage:
            proxy = "/".join(parts[2:])
            return parts[0], parts[1], proxy, f"/{parts[1]}/{{proxy+}}" if proxy else f"/{parts[1]}"
        if request.method != "POST" or len(parts) != 3 or parts[2] not in ROUTES:
            raise MissingAuthenticationToken()
        stage, name, route = parts
        alias = self.routes.get((name, stage))
        # /predict_proba exists only where the stage's model has it, as a resource
        # exists only where it was deployed; either way, before any key is looked at.
        if alias is None or (route == "predict_proba" and not self._has_proba(name, str(alias.version))):
            raise MissingAuthenticationToken()
        return stage, name, route, f"/{name}/{route}"

    def _authenticate(self, request: Request, stage: str) -> ApiKey | None:
        """The caller's key, or 403: missing, unknown, revoked, or its usage plan not attached
        to this stage (as API Gateway accepts a key only on its plan's API stages)."""
        if not self.settings.api_key_required:
            return None
        value = request.headers.get("x-api-key")
        key = self.catalog.key(value) if value else None
        if key is None:
            raise Forbidden()
        plan = self.catalog.plans.get(key.plan_id or "")
        if plan is None or stage not in plan.stages:
            raise Forbidden()
        return key

    def _version_for(self, name: str, stage: str) -> str:
        if name in self.handlers:
            return "$LATEST"
        alias = self.routes[(name, stage)]
        if alias.canary_version is not None and self.rng() * 100 < alias.canary_weight:
            return str(alias.canary_version)
        return str(alias.version)

    def _has_proba(self, name: str, version: str) -> bool:
        record = self.catalog.versions.get((name, int(version))) if version.isdigit() else None
        return bool(record and record.manifest.get("has_proba"))

    def _event(
        self,
        request: Request,
        ids: tuple[str, str],
        stage: str,
        name: str,
        route: str,
        resource: str,
        key: ApiKey | None,
    ) -> dict[str, Any]:
        """The request in compact form: the environment builds the full REST proxy event."""
        try:
            body: str | bytes = request.body.decode("utf-8")
        except UnicodeDecodeError:
            body = request.body  # not text: passed base64-encoded, as for a binary media type
        extra: dict[str, Any] = {}
        rate = self.catalog.captures.get((name, stage))
        if rate:  # as API Gateway passes the stage's variables (deploy --capture sets this one)
            extra["stage_variables"] = {STAGE_VARIABLE: f"{rate:g}"}
        if name in self.handlers:
            path = f"/{name}/{route}" if route else f"/{name}"
            extra |= {
                "resource": resource,
                "path": path,
                "path_parameters": {"proxy": route} if route else None,
            }
        return compact(
            body if request.body else None,
            model=name,
            stage=stage,
            route=route,
            method=request.method,
            headers=request.headers,
            query=request.query or None,
            source_ip=request.source_ip,
            api_key=request.headers.get("x-api-key") if key else None,
            api_key_id=key.id if key else None,
            request_id=ids[0],
            extended_request_id=ids[1],
            domain_name=self.settings.domain_name,
            **extra,
        )


class _GaveUp(Exception):
    """The integration timeout passed: the caller stops waiting; the invocation goes on."""


def _versions(alias: Alias | None) -> set[str]:
    """The versions a stage sends requests to: its version, and its canary's."""
    if alias is None:
        return set()
    return {str(v) for v in (alias.version, alias.canary_version) if v is not None}


def _stop_waiting(pending: asyncio.Future[Outcome]) -> None:
    if not pending.done():
        pending.set_exception(_GaveUp())


def _printable(text: str) -> str:
    """A path as a header value and a log line may hold it: ASCII, no control characters."""
    return urllib.parse.quote(text[:200], safe="/-_.~!$&'()*+,;=:@%")
