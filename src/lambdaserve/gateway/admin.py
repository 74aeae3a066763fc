"""Everything under ``/_/`` and the Lambda Invoke API, as a Starlette application.

Public: ``/_/health``, ``/_/openapi.json``, ``/_/docs``. Behind the admin token
(``Authorization: Bearer <token>``): ``/_/metrics`` and the JSON admin API under
``/_/api/``, which the web console uses and scripts may use (the CLI writes the store
directly, so it works whether or not a server runs).

Admin API:
    GET    /_/api/models                              models, versions, stages
    GET    /_/api/models/{model}                      one model
    PUT    /_/api/models/{model}/stages/{stage}       {"version": 2, "canary": {"version": 3, "weight": 10}}
    POST   /_/api/models/{model}/stages/{stage}/rollback
    GET    /_/api/plans        POST /_/api/plans      {"name", "rate", "burst", "quota": "100/DAY"}
    GET    /_/api/keys         POST /_/api/keys       {"name", "plan"}  -> the key's value, once
    DELETE /_/api/keys/{key}                          revoke
    GET    /_/api/logs/{model}?lines=100
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from lambdaserve import __version__
from lambdaserve.errors import LambdaserveError
from lambdaserve.gateway.core import Gateway
from lambdaserve.gateway.invoke_api import invoke_function
from lambdaserve.gateway.openapi import docs_page, openapi_spec
from lambdaserve.store.records import parse_quota


def create_admin_app(gateway: Gateway, admin_token: str) -> Starlette:
    store = gateway.store

    def authorised(request: HTTPRequest) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), admin_token)

    def guarded(endpoint: Any) -> Any:
        async def wrapper(request: HTTPRequest) -> Response:
            if not authorised(request):
                return JSONResponse(
                    {"message": "Unauthorized: send the admin token as 'Authorization: Bearer <token>'."},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                response: Response = await endpoint(request)
                return response
            except LambdaserveError as exc:
                return JSONResponse({"message": exc.message, "hint": exc.hint}, status_code=400)
            except (KeyError, ValueError, TypeError) as exc:  # a field missing or of the wrong type
                return JSONResponse({"message": f"Bad request: {exc!s}"}, status_code=400)

        return wrapper

    async def body(request: HTTPRequest) -> dict[str, Any]:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LambdaserveError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise LambdaserveError("The request body must be a JSON object.")
        return data

    async def root(request: HTTPRequest) -> Response:
        return RedirectResponse("/_/", status_code=307)

    async def index(request: HTTPRequest) -> Response:
        return HTMLResponse(
            "<!doctype html><title>lambdaserve</title><h1>lambdaserve</h1>"
            '<ul><li><a href="/_/docs">API documentation</a></li>'
            '<li><a href="/_/openapi.json">OpenAPI</a></li><li><a href="/_/health">health</a></li></ul>'
        )

    async def health(request: HTTPRequest) -> Response:
        functions = [
            {"model": f.name, "version": f.version, "environments": len(f.environments), "busy": f.busy}
            for f in gateway.functions.values()
        ]
        return JSONResponse({"status": "ok", "version": __version__, "functions": functions})

    async def metrics(request: HTTPRequest) -> Response:
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    async def openapi(request: HTTPRequest) -> Response:
        return JSONResponse(openapi_spec(gateway, str(request.base_url).rstrip("/")))

    async def docs(request: HTTPRequest) -> Response:
        return HTMLResponse(docs_page(openapi_spec(gateway, str(request.base_url).rstrip("/"))))

    def model_view(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "versions": [v.to_dict() for v in store.versions(name)],
            "stages": [a.to_dict() for a in store.aliases(name)],
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
        alias = store.set_alias(
            request.path_params["model"],
            request.path_params["stage"],
            int(data["version"]),
            int(canary["version"]) if canary else None,
            float(canary.get("weight", 0)) if canary else 0.0,
        )
        gateway.catalog.refresh(force=True)
        return JSONResponse(alias.to_dict())

    async def rollback(request: HTTPRequest) -> Response:
        alias = store.rollback(request.path_params["model"], request.path_params["stage"])
        gateway.catalog.refresh(force=True)
        return JSONResponse(alias.to_dict() if alias else {"removed": True})

    async def plans(request: HTTPRequest) -> Response:
        if request.method == "POST":
            data = await body(request)
            limit, period = parse_quota(data.get("quota"))
            plan = store.create_plan(
                str(data.get("name") or ""), data.get("rate"), data.get("burst"), limit, period
            )
            gateway.catalog.refresh(force=True)
            return JSONResponse(plan.to_dict(), status_code=201)
        return JSONResponse({"plans": [p.to_dict() for p in store.plans()]})

    async def keys(request: HTTPRequest) -> Response:
        if request.method == "POST":
            data = await body(request)
            key, value = store.create_key(str(data.get("name") or "key"), data.get("plan"))
            gateway.catalog.refresh(force=True)
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
        gateway.catalog.refresh(force=True)
        return JSONResponse(key.to_dict())

    async def logs(request: HTTPRequest) -> Response:
        count = int(request.query_params.get("lines", "100"))
        return JSONResponse({"lines": gateway.logs.recent(request.path_params["model"], count)})

    async def lambda_invoke(request: HTTPRequest) -> Response:
        return await invoke_function(gateway, request)

    async def not_found(request: HTTPRequest) -> Response:
        return PlainTextResponse("Not found", status_code=404)

    routes = [
        Route("/", root),
        Route("/_/", index),
        Route("/_/health", health),
        Route("/_/metrics", guarded(metrics)),
        Route("/_/openapi.json", openapi),
        Route("/_/docs", docs),
        Route("/_/api/models", guarded(models)),
        Route("/_/api/models/{model}", guarded(model)),
        Route("/_/api/models/{model}/stages/{stage}", guarded(promote), methods=["PUT"]),
        Route("/_/api/models/{model}/stages/{stage}/rollback", guarded(rollback), methods=["POST"]),
        Route("/_/api/plans", guarded(plans), methods=["GET", "POST"]),
        Route("/_/api/keys", guarded(keys), methods=["GET", "POST"]),
        Route("/_/api/keys/{key}", guarded(revoke), methods=["DELETE"]),
        Route("/_/api/logs/{model}", guarded(logs)),
        Route("/2015-03-31/functions/{function}/invocations", lambda_invoke, methods=["POST"]),
    ]
    return Starlette(routes=routes)
