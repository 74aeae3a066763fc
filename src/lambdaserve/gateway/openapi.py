"""OpenAPI 3 description of the prediction routes, and a self-contained page showing it.

Generated from the store: one path per model stage and route, with the request body
each model takes (strings, rows of numbers, or objects with its feature names), the
answers (200 and every error of the contract) and the ``x-api-key`` security scheme.
The page needs no network: no CDN, no script.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambdaserve.gateway.core import Gateway

_ERRORS = {
    "400": 'The body is not valid JSON or not a shape the model takes: {"error": ...}',
    "403": 'Missing or invalid x-api-key ({"message": "Forbidden"}), or unknown route',
    "413": 'Body over 10 MB, or event over Lambda\'s 6 MB ({"message": "Request Too Long"})',
    "422": 'The model rejects the input (missing columns, wrong width): {"error": ...}',
    "429": 'Usage plan throttle ({"message": "Too Many Requests"}) or quota ({"message": "Limit Exceeded"})',
    "500": 'The model failed: {"error": ..., with a request id}',
    "502": 'The function crashed, timed out or ran out of memory: {"message": "Internal server error"}',
    "504": 'No answer within the integration timeout: {"message": "Endpoint request timed out"}',
}


def _instances(manifest: dict[str, Any]) -> dict[str, Any]:
    names = manifest.get("feature_names")
    if names:
        row = {"type": "object", "properties": {n: {} for n in names}, "required": list(names)}
    elif manifest.get("n_features"):
        row = {
            "type": "array",
            "items": {"type": "number"},
            "minItems": manifest["n_features"],
            "maxItems": manifest["n_features"],
        }
    else:
        row = {"type": "string"}
    schema: dict[str, Any] = {"type": "array", "items": row}
    if manifest.get("sample_input") is not None:
        schema["example"] = manifest["sample_input"]
    return schema


def openapi_spec(gateway: Gateway, base_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    security: list[dict[str, list[str]]] = [{"apiKey": []}] if gateway.settings.api_key_required else []
    for (model, stage), alias in sorted(gateway.catalog.aliases.items()):
        record = gateway.catalog.versions.get((model, alias.version))
        manifest = record.manifest if record else {}
        routes = ["predict", "predict_proba"] if manifest.get("has_proba") else ["predict"]
        for route in routes:
            answer = (
                "one {class: probability} object per instance"
                if route == "predict_proba"
                else "one prediction per instance, in order"
            )
            paths[f"/{stage}/{model}/{route}"] = {
                "post": {
                    "summary": f"{model} ({stage} -> version {alias.version}): {route}",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _instances(manifest)}},
                    },
                    "responses": {
                        "200": {
                            "description": f"A JSON array: {answer}.",
                            "headers": {"x-lambdaserve-model-version": {"schema": {"type": "string"}}},
                        },
                        **{code: {"description": text} for code, text in _ERRORS.items()},
                    },
                }
            }
    return {
        "openapi": "3.0.3",
        "info": {"title": "lambdaserve prediction API", "version": "1"},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
        },
    }


def docs_page(spec: dict[str, Any]) -> str:
    base = spec["servers"][0]["url"]
    parts = [
        "<!doctype html><meta charset=utf-8><title>lambdaserve API</title>",
        "<style>body{font:15px system-ui;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "pre{background:#8881;padding:.8rem;overflow:auto}"
        "@media(prefers-color-scheme:dark){body{background:#111;color:#ddd}}</style>",
        "<h1>lambdaserve prediction API</h1>",
        '<p>Machine-readable: <a href="/_/openapi.json">openapi.json</a>.</p>',
    ]
    for path, item in spec["paths"].items():
        operation = item["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        example = json.dumps(schema.get("example", ["..."]))
        key = " -H 'x-api-key: YOUR_KEY'" if operation["security"] else ""
        parts += [
            f"<h2>POST {html.escape(path)}</h2><p>{html.escape(operation['summary'])}</p>",
            f"<pre>curl -X POST {html.escape(base + path)}{html.escape(key)} "
            f"-d '{html.escape(example)}'</pre>",
            "<ul>"
            + "".join(
                f"<li><b>{code}</b>: {html.escape(r['description'])}</li>"
                for code, r in operation["responses"].items()
            )
            + "</ul>",
        ]
    if not spec["paths"]:
        parts.append("<p>No model is served yet.</p>")
    return "\n".join(parts)
