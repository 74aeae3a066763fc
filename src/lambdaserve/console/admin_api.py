"""Everything under ``/_/`` and the Lambda Invoke API, as a Starlette application.

Public: ``/_/health``, ``/_/openapi.json``, ``/_/docs``, the console's sign-in page and
static files. Behind the admin token (``Authorization: Bearer <token>``) or a console
session (``sessions.py``: cookie, plus ``X-CSRF-Token`` on requests that change state):
``/_/metrics``, the console's pages (``console.py``) and the JSON admin API under
``/_/api/``, which the web console uses, and only it, and scripts may use (the CLI writes
the store directly, so it works whether or not a server runs).

Admin API:
    GET    /_/api/models                              models, versions, stages
    GET    /_/api/models/{model}                      one model
    POST   /_/api/uploads?filename=NAME               the model file as the body -> {"upload": id}
    POST   /_/api/models/{model}/versions             {"upload", "sample", "stage", "trust", "promote",
                                                       "key": {"name", "plan"}} -> report, endpoint, key
    PUT    /_/api/models/{model}/stages/{stage}       {"version": 2, "canary": {"version": 3, "weight": 10}}
    POST   /_/api/models/{model}/stages/{stage}/rollback
    PUT    /_/api/models/{model}/stages/{stage}/capture {"rate": 0.1}: capture 10% of the stage's
                                                      requests (0: off); the stage's "capture"
                                                      in GET /_/api/models says its rate
    GET    /_/api/plans        POST /_/api/plans      {"name", "rate", "burst", "quota": "100/DAY",
                                                       "stages": ["test", "prod"]}
    PATCH  /_/api/plans/{plan}                        the fields to change (null removes a limit)
    GET    /_/api/keys         POST /_/api/keys       {"name", "plan"}  -> the key's value, once
    DELETE /_/api/keys/{key}                          revoke
    GET    /_/api/logs/{model}?lines=100
    GET    /_/api/series?model=&stage=&minutes=10     the golden signals, every 2 s, and cold starts
    GET    /_/api/models/{model}/cost?requests=1M&arch=x86_64&region=us-east-1
                                                      a month on AWS (lambdaserve cost) and the
                                                      same at other volumes ("curve")
    GET    /_/api/models/{model}/loadtests            the load tests recorded for it (lambdaserve
                                                      loadtest), newest first, and the latest one's
                                                      per-second timeline
    GET    /_/api/models/{model}/drift?stage=&since=7d&window=day
                                                      captured requests against the reference, per
                                                      window (lambdaserve drift --json's object)
    GET    /_/api/session                             how this request is authorised, its CSRF token
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from lambdaserve import __version__
from lambdaserve.apigateway.gateway import Gateway
from lambdaserve.apigateway.invoke_api import invoke_function
from lambdaserve.apigateway.openapi import docs_page, openapi_spec
from lambdaserve.console import fields
from lambdaserve.console.pages import console_routes
from lambdaserve.console.publish import publish_upload
from lambdaserve.console.sessions import CSRF_HEADER, SessionBook
from lambdaserve.console.uploads import MB, UploadArea, UploadRefused
from lambdaserve.deploy.costing import LocalFacts, curve, local_facts, measured_dict, project
from lambdaserve.deploy.pricing import parse_volume, prices_for
from lambdaserve.errors import LambdaserveError
from lambdaserve.monitoring.capture import read_records
from lambdaserve.monitoring.drift import parse_age
from lambdaserve.monitoring.model_drift import model_drift
from lambdaserve.monitoring.quality import quality
from lambdaserve.store import Store
from lambdaserve.store.captures import capture_rates, set_capture_rate
from lambdaserve.store.feedback import labels_of, record_labels
from lambdaserve.store.loadtests import latest_loadtest, loadtests
from lambdaserve.store.records import parse_quota


def create_admin_app(gateway: Gateway, admin_token: str) -> Starlette:
    store = gateway.store
    sessions = SessionBook(admin_token)
    uploads = UploadArea(store.root, gateway.settings.max_upload_mb * MB)

    def guarded(endpoint: Any) -> Any:
        async def wrapper(request: HTTPRequest) -> Response:
            access = sessions.access(request)
            if access is None:
                return JSONResponse(
                    {
                        "message": "Unauthorized: send the admin token as 'Authorization: Bearer <token>', "
                        "or sign in to the console at /_/."
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not sessions.csrf_ok(request, access):
                return JSONResponse(
                    {
                        "message": f"Forbidden: a request that changes state needs the {CSRF_HEADER} header "
                        "of its console session.",
                        "hint": "Reload the console page (it sends the header itself), or use the "
                        "admin token as a bearer token from scripts.",
                    },
                    status_code=403,
                )
            try:
                response: Response = await endpoint(request)
                return response
            except UploadRefused as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            except LambdaserveError as exc:
                return JSONResponse({"message": exc.message, "hint": exc.hint}, status_code=400)
            except (KeyError, ValueError, TypeError, OverflowError) as exc:  # a field missing or wrong
                return JSONResponse({"message": f"Bad request: {exc!s}"}, status_code=400)

        return wrapper

    async def body(request: HTTPRequest) -> dict[str, Any]:
        try:
            data = await request.json()
        except RecursionError:
            raise LambdaserveError("The request body nests too deeply.") from None
        except (ValueError, UnicodeDecodeError):  # not JSON, or a number of thousands of digits
            raise LambdaserveError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise LambdaserveError("The request body must be a JSON object.")
        return data

    async def root(request: HTTPRequest) -> Response:
        return RedirectResponse("/_/", status_code=307)

    async def health(request: HTTPRequest) -> Response:
        functions = [
            {"model": f.name, "version": f.version, "environments": len(f.environments), "busy": f.busy}
            for f in gateway.lambdas.functions.values()
        ]
        return JSONResponse({"status": "ok", "version": __version__, "functions": functions})

    async def metrics(request: HTTPRequest) -> Response:
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    async def openapi(request: HTTPRequest) -> Response:
        return JSONResponse(openapi_spec(gateway, str(request.base_url).rstrip("/")))

    async def docs(request: HTTPRequest) -> Response:
        return HTMLResponse(docs_page(openapi_spec(gateway, str(request.base_url).rstrip("/"))))

    def model_view(name: str) -> dict[str, Any]:
        rates = capture_rates(store, name)
        return {
            "name": name,
            "versions": [v.to_dict() for v in store.versions(name)],
            "stages": [
                {
                    **a.to_dict(),
                    "rollback": store.rollback_target(name, a.stage),
                    "capture": rates.get((name, a.stage), 0.0),
                }
                for a in store.aliases(name)
            ],
        }

    async def models(request: HTTPRequest) -> Response:
        return JSONResponse({"models": [model_view(name) for name in store.models()]})

    async def model(request: HTTPRequest) -> Response:
        name = request.path_params["model"]
        if name not in store.models():
            return JSONResponse({"message": f"No model {name!r}."}, status_code=404)
        return JSONResponse(model_view(name))

    async def promote(request: HTTPRequest) -> Response:
        data = await body(request)
        canary = data.get("canary") or {}
        if not isinstance(canary, dict):
            raise LambdaserveError('canary must be an object: {"version": 2, "weight": 10}.')
        version = fields.whole_number(data, "version", low=1)
        if version is None:
            raise LambdaserveError('The body needs a version: {"version": 2}.')
        alias = store.set_alias(
            request.path_params["model"],
            request.path_params["stage"],
            version,
            fields.whole_number(canary, "version", low=1) if canary else None,
            (fields.decimal(canary, "weight", low=0, high=100) or 0.0) if canary else 0.0,
        )
        gateway.refresh(force=True)
        return JSONResponse(alias.to_dict())

    async def rollback(request: HTTPRequest) -> Response:
        alias = store.rollback(request.path_params["model"], request.path_params["stage"])
        gateway.refresh(force=True)
        return JSONResponse(alias.to_dict() if alias else {"removed": True})

    async def capture(request: HTTPRequest) -> Response:
        data = await body(request)
        name, stage = request.path_params["model"], request.path_params["stage"]
        if store.alias(name, stage) is None:
            return JSONResponse({"message": f"Model {name!r} has no stage {stage!r}."}, status_code=404)
        off = data.get("rate") == 0 and not isinstance(data.get("rate"), bool)
        rate = 0.0 if off else fields.decimal(data, "rate", low=0, high=1)
        if rate is None:
            raise LambdaserveError('The body needs a rate from 0 to 1: {"rate": 0.1} captures 10%.')
        set_capture_rate(store, name, stage, rate)
        gateway.refresh(force=True)
        return JSONResponse({"model": name, "stage": stage, "rate": rate})

    async def plans(request: HTTPRequest) -> Response:
        if request.method == "POST":
            data = await body(request)
            limit, period = parse_quota(fields.text(data, "quota") or None)
            plan = store.create_plan(
                fields.text(data, "name", longest=64),
                fields.decimal(data, "rate", low=0, high=1_000_000),
                fields.whole_number(data, "burst", low=1),
                limit,
                period,
                fields.names(data, "stages") or [gateway.settings.stage],
            )
            gateway.refresh(force=True)
            return JSONResponse(plan.to_dict(), status_code=201)
        return JSONResponse({"plans": [p.to_dict() for p in store.plans()]})

    async def change_plan(request: HTTPRequest) -> Response:
        data = await body(request)
        current = store.plan(request.path_params["plan"])
        rate, burst = current.rate, current.burst
        if "rate" in data or "burst" in data:
            rate = fields.decimal(data, "rate", low=0, high=1_000_000)
            burst = fields.whole_number(data, "burst", low=1)
        limit, period = current.quota_limit, current.quota_period
        if "quota" in data:
            limit, period = parse_quota(fields.text(data, "quota") or None)
        stages = fields.names(data, "stages") if "stages" in data else None
        plan = store.update_plan(current.name, rate, burst, limit, period, stages)
        gateway.refresh(force=True)
        return JSONResponse(plan.to_dict())

    async def keys(request: HTTPRequest) -> Response:
        if request.method == "POST":
            data = await body(request)
            named = fields.text(data, "plan")
            chosen = store.plan(named) if named else store.default_plan(gateway.settings.stage)
            key, value = store.create_key(fields.text(data, "name", default="key") or "key", chosen.id)
            gateway.refresh(force=True)
            return JSONResponse({**key.to_dict(), "value": value}, status_code=201)
        listed = []
        for key in store.api_keys():
            plan = gateway.catalog.plans.get(key.plan_id or "")
            used = gateway.usage.used(key, plan) if plan else 0
            listed.append(
                {
                    **key.to_dict(),
                    "plan": plan.name if plan else None,
                    "used": used,
                    "quota": plan.quota_limit if plan else None,
                }
            )
        return JSONResponse({"keys": listed})

    async def revoke(request: HTTPRequest) -> Response:
        key = store.revoke_key(request.path_params["key"])
        gateway.refresh(force=True)
        return JSONResponse(key.to_dict())

    async def logs(request: HTTPRequest) -> Response:
        lines = request.query_params.get("lines", "100")
        count = int(lines) if lines.isdigit() and 0 < len(lines) < 6 else 0
        if not 1 <= count <= 10_000:
            raise LambdaserveError("lines must be a whole number from 1 to 10000.", "e.g. ?lines=100")
        return JSONResponse({"lines": gateway.logs.recent(request.path_params["model"], count)})

    async def cost(request: HTTPRequest) -> Response:
        """A month's AWS bill for the model, as ``lambdaserve cost`` prices it, and the same
        at other volumes for the break-even chart."""
        query = request.query_params
        model = request.path_params["model"]
        facts = await asyncio.to_thread(_facts_of, store.root, model)
        result = project(
            facts,
            requests=parse_volume(query.get("requests", "1M")),
            region=query.get("region", "us-east-1"),
            architecture=query.get("arch", "x86_64"),
        )
        volumes = [round(10 ** (exponent / 4)) for exponent in range(16, 38)]  # 10k to 1.8 billion
        return JSONResponse(
            {
                **result.to_dict(),
                "measured": measured_dict(facts),
                "sources": prices_for(result.region).sources,
                "curve": curve(result, volumes),
            }
        )

    async def load_tests(request: HTTPRequest) -> Response:
        name = request.path_params["model"]
        if name not in store.models():
            return JSONResponse({"message": f"No model {name!r}."}, status_code=404)
        runs, latest = await asyncio.to_thread(_runs_of, store.root, name)
        return JSONResponse({"model": name, "runs": runs, "latest": latest})

    async def monitoring_report(request: HTTPRequest, report: Any, since: str) -> Response:
        """A monitoring report of the model's local captures (``?stage=&since=&window=``)."""
        name = request.path_params["model"]
        if name not in store.models():
            return JSONResponse({"message": f"No model {name!r}."}, status_code=404)
        query = request.query_params
        window = query.get("window", "day")
        if window not in ("day", "hour"):
            raise LambdaserveError("window must be day or hour.", "e.g. ?window=hour")
        age = parse_age(query.get("since", since))
        found = await asyncio.to_thread(report, store.root, name, query.get("stage") or None, age, window)
        return JSONResponse(found)

    async def drift(request: HTTPRequest) -> Response:
        return await monitoring_report(request, _drift_of, "7d")

    async def add_feedback(request: HTTPRequest) -> Response:
        """Labels for past requests: ``{"labels": [{"requestId": ..., "label": ...}, ...]}``."""
        name = request.path_params["model"]
        if name not in store.models():
            return JSONResponse({"message": f"No model {name!r}."}, status_code=404)
        data = await body(request)
        given = data.get("labels")
        if not isinstance(given, list) or not all(isinstance(g, dict) and "label" in g for g in given):
            raise LambdaserveError(
                'The body is {"labels": [{"requestId": "...", "label": ...}, ...]}.',
                "Name each request by the x-amzn-RequestId its caller got back.",
            )
        pairs = [(str(g.get("requestId") or ""), g["label"]) for g in given]
        added = await asyncio.to_thread(_add_labels, store.root, name, pairs)
        return JSONResponse({"model": name, "added": added})

    async def model_quality(request: HTTPRequest) -> Response:
        return await monitoring_report(request, _quality_of, "30d")

    async def upload(request: HTTPRequest) -> Response:
        received = await uploads.receive(request)
        return JSONResponse(received.to_dict(), status_code=201)

    async def publish(request: HTTPRequest) -> Response:
        data = await body(request)
        received = uploads.get(str(data.get("upload") or ""))
        base = str(request.base_url).rstrip("/")
        result = await publish_upload(gateway, received, request.path_params["model"], data, base)
        uploads.discard(received.id)
        return JSONResponse(result, status_code=201)

    async def series(request: HTTPRequest) -> Response:
        minutes = float(request.query_params.get("minutes", "10"))
        if not 0 < minutes <= 60:
            raise LambdaserveError("minutes must be above 0 and at most 60.", "e.g. ?minutes=10")
        found = gateway.series.series(
            request.query_params.get("model") or None, request.query_params.get("stage") or None, minutes
        )
        return JSONResponse(found)

    async def session(request: HTTPRequest) -> Response:
        access = sessions.access(request)
        return JSONResponse(
            {
                "via": access.via if access else None,
                "csrf_token": access.session.csrf_token if access and access.session else None,
                "max_upload_bytes": uploads.max_bytes,
                "version": __version__,
            }
        )

    async def lambda_invoke(request: HTTPRequest) -> Response:
        return await invoke_function(gateway, request)

    async def not_found(request: HTTPRequest) -> Response:
        return PlainTextResponse("Not found", status_code=404)

    routes = [
        Route("/", root),
        *console_routes(sessions, uploads.max_bytes, gateway.settings.stage),
        Route("/_/health", health),
        Route("/_/metrics", guarded(metrics)),
        Route("/_/openapi.json", openapi),
        Route("/_/docs", docs),
        Route("/_/api/models", guarded(models)),
        Route("/_/api/models/{model}", guarded(model)),
        Route("/_/api/models/{model}/stages/{stage}", guarded(promote), methods=["PUT"]),
        Route("/_/api/models/{model}/stages/{stage}/rollback", guarded(rollback), methods=["POST"]),
        Route("/_/api/models/{model}/stages/{stage}/capture", guarded(capture), methods=["PUT"]),
        Route("/_/api/plans", guarded(plans), methods=["GET", "POST"]),
        Route("/_/api/plans/{plan}", guarded(change_plan), methods=["PATCH"]),
        Route("/_/api/keys", guarded(keys), methods=["GET", "POST"]),
        Route("/_/api/models/{model}/cost", guarded(cost), methods=["GET"]),
        Route("/_/api/models/{model}/loadtests", guarded(load_tests), methods=["GET"]),
        Route("/_/api/models/{model}/drift", guarded(drift), methods=["GET"]),
        Route("/_/api/models/{model}/feedback", guarded(add_feedback), methods=["POST"]),
        Route("/_/api/models/{model}/quality", guarded(model_quality), methods=["GET"]),
        Route("/_/api/keys/{key}", guarded(revoke), methods=["DELETE"]),
        Route("/_/api/logs/{model}", guarded(logs)),
        Route("/_/api/uploads", guarded(upload), methods=["POST"]),
        Route("/_/api/models/{model}/versions", guarded(publish), methods=["POST"]),
        Route("/_/api/series", guarded(series)),
        Route("/_/api/session", guarded(session)),
        Route("/2015-03-31/functions/{function}/invocations", lambda_invoke, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _facts_of(root: Path, model: str) -> LocalFacts:
    """The model's local facts, read with this thread's own store connection."""
    store = Store(root)
    try:
        return local_facts(store, model)
    finally:
        store.close()


def _drift_of(root: Path, model: str, stage: str | None, age: timedelta, window: str) -> dict[str, Any]:
    """``lambdaserve drift --json``'s report of the local captures, with this thread's own store
    connection; with no captured request, the report says how to turn capture on."""
    since = datetime.now(timezone.utc) - age
    store = Store(root)
    try:
        records = list(read_records(root, model, since=since, stage=stage))
        report = model_drift(store, model, records, stage=stage, since=since, window=window)
    finally:
        store.close()
    if not records:
        report["notes"].insert(
            0,
            f"No captured request in this period. Turn capture on: lambdaserve capture set {model} "
            f"--stage {stage or 'STAGE'} 10% (or lambdaserve serve --capture 10%).",
        )
    return report


def _add_labels(root: Path, model: str, pairs: list[tuple[str, Any]]) -> int:
    store = Store(root)
    try:
        return record_labels(store, model, pairs)
    finally:
        store.close()


def _quality_of(root: Path, model: str, stage: str | None, age: timedelta, window: str) -> dict[str, Any]:
    """``lambdaserve feedback --json``'s report of the local captures and the stored labels."""
    since = datetime.now(timezone.utc) - age
    store = Store(root)
    try:
        labels = labels_of(store, model)
    finally:
        store.close()
    records = read_records(root, model, since=since, stage=stage)
    return {"model": model, "stage": stage, **quality(records, labels, window)}


def _runs_of(root: Path, model: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The model's recorded load tests, read with this thread's own store connection."""
    store = Store(root)
    try:
        return loadtests(store, model), latest_loadtest(store, model)
    finally:
        store.close()
