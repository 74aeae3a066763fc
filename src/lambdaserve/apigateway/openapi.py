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
    from lambdaserve.apigateway.gateway import Gateway

_ERRORS = {
    "400": 'The body is not valid JSON or not a shape the model takes: {"error": ...}',
    "403": 'Missing or invalid x-api-key ({"message": "Forbidden"}), or unknown route',
    "413": 'Body over 10 MB, or event over Lambda\'s 6 MB ({"message": "Request Too Long"})',
    "422": 'The model rejects the input (missing columns, wrong width): {"error": ...}',
    "429": 'Usage plan throttle ({"message": "Too Many Requests"}) or quota ({"message": "Limit Exceeded"})',
    "500": 'The model failed: {"error": ..., with a request id}',
    "502": 'The function crashed, timed out or ran out of memory: {"message": "Internal server error"}',
    "504": 'No answer within the integration timeout ({"message": "Endpoint request timed out"}), '
    'or an explanation that would not end in time ({"error": ...}, with the num_samples that fit)',
}


# A feature's value when the sample does not say its type: any JSON scalar.
_ANY_SCALAR: dict[str, Any] = {
    "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}],
    "nullable": True,
}
# A numeric feature: a finite number (within a 64-bit float); true and false read as 1 and 0,
# and a string that reads as a number ("5.1", " 1e3", "nan") is read as one, as numpy reads
# them all. The pattern is a little wider than what reads ("1.2.3" matches, then gets 422);
# what it refuses never reads. null (a missing value) is left out of typed features: only a
# model that imputes takes it, the others answer 422, and the document cannot tell which.
_READS_AS_NUMBER = r"^\s*[+-]?([\d_.eE+-]*\d[\d_.eE+-]*|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])\s*$"
_NUMBER: dict[str, Any] = {
    "anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string", "pattern": _READS_AS_NUMBER}]
}
_STRING: dict[str, Any] = {"type": "string"}
_BOOLEAN: dict[str, Any] = {"type": "boolean"}


def _feature(value: Any) -> dict[str, Any]:
    """A feature's schema from its value in the packaged sample."""
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, (int, float)):
        return _NUMBER
    if isinstance(value, str):
        return _STRING
    return _ANY_SCALAR


def _sample_row(manifest: dict[str, Any]) -> dict[str, Any] | list[Any] | None:
    """The sample's first instance, when it is a row or a record."""
    sample = manifest.get("sample_input")
    first = sample[0] if isinstance(sample, list) and sample else sample
    return first if isinstance(first, (dict, list)) else None


def _instances(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the handler takes: a batch (a non-empty array of instances of one kind), or one
    record or string alone. A model fitted on named features takes records and rows."""
    names = manifest.get("feature_names")
    width = len(names) if names else manifest.get("n_features")
    sample = _sample_row(manifest)
    if names and isinstance(sample, list) and len(sample) == len(names):
        sample = dict(zip(names, sample, strict=True))
    kinds: list[dict[str, Any]] = []
    if names:
        found = sample if isinstance(sample, dict) else {}
        kinds.append(
            {
                "type": "object",
                "properties": {n: _feature(found.get(n)) for n in names},
                "required": list(names),
                "additionalProperties": False,
            }
        )
    if width:
        # One schema for every position (OpenAPI 3.0 has no per-position items): the sample's
        # type when all its values share one, else any scalar.
        values = list(sample.values()) if isinstance(sample, dict) else sample or []
        types = [_feature(v) for v in values] if len(values) == width else []
        same = types and all(t is types[0] for t in types)
        kinds.append(
            {
                "type": "array",
                "items": types[0] if same else _ANY_SCALAR,
                "minItems": width,
                "maxItems": width,
            }
        )
    else:
        kinds.append({"type": "string"})
    alone = [k for k in kinds if k["type"] != "array"]  # a bare row reads as a batch of numbers
    schema: dict[str, Any] = {
        "oneOf": [*({"type": "array", "items": k, "minItems": 1} for k in kinds), *alone]
    }
    if manifest.get("sample_input") is not None:
        schema["example"] = manifest["sample_input"]
    return schema


_ANSWERS = {
    "predict": "one prediction per instance, in order",
    "predict_proba": "one {class: probability} object per instance",
    "explain": "one LIME explanation per instance: the label, its probability and, per explained "
    "label, [feature, weight] pairs with the local model's intercept and score",
}


def _explain_body(manifest: dict[str, Any]) -> dict[str, Any]:
    """The instances as for predict, or an object holding them with LIME's options."""
    count = {"type": "integer", "minimum": 1}
    options = {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": _instances(manifest),
            "num_features": {**count, "maximum": 100, "default": 6},
            "num_samples": {"type": "integer", "minimum": 10, "maximum": 10000, "default": 1000},
            "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 100},
            "top_labels": {**count, "maximum": 1000, "default": 1},
            "random_state": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "default": 0},
        },
    }
    return {"oneOf": [_instances(manifest), options]}


def openapi_spec(gateway: Gateway, base_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    security: list[dict[str, list[str]]] = [{"apiKey": []}] if gateway.settings.api_key_required else []
    for (model, stage), alias in sorted(gateway.catalog.aliases.items()):
        record = gateway.catalog.versions.get((model, alias.version))
        manifest = record.manifest if record else {}
        routes = ["predict", "predict_proba"] if manifest.get("has_proba") else ["predict"]
        for route in [*routes, "explain"]:
            answer = _ANSWERS[route]
            body = _explain_body(manifest) if route == "explain" else _instances(manifest)
            paths[f"/{stage}/{model}/{route}"] = {
                "post": {
                    "summary": f"{model} ({stage} -> version {alias.version}): {route}",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
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
