"""The Lambda handler: ``lambdaserve.runtime.handler.handler(event, context)``.

Lifecycle, as in Lambda:

- INIT, once per execution environment: importing this module loads the model named by
  ``LAMBDASERVE_MODEL`` (a path or ``s3://bucket/key?versionId=...``), refusing a file
  whose sha256 differs from ``LAMBDASERVE_MODEL_SHA256`` when that is set. A failure
  here is an INIT error, reported by the runtime before any request is taken.
- then one ``handler`` call per invocation: parse the event, shape the instances,
  predict, answer with an API Gateway proxy response, and print one JSON log line; for a
  request sampled for capture (``capture.py``), a capture record after it.

Environment: the variables of ``variables.py``. The warm-up sample is predicted once during
INIT: a model's first call pays for lazy set-up (10 ms or more for a scikit-learn
pipeline), which then no request pays.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

from lambdaserve.runtime import models, source, variables
from lambdaserve.runtime.capture import CaptureSampler, api_request_id_of, stage_of
from lambdaserve.runtime.errors import BadRequest, ModelLoadError, RequestError
from lambdaserve.runtime.events import PredictionRequest, parse_event
from lambdaserve.runtime.explaining import Explainer, parse_request
from lambdaserve.runtime.instances import kind_of as instance_kind
from lambdaserve.runtime.responses import jsonable, proxy_response, to_json

# Exceptions a model raises when the input does not fit it (wrong types, shapes, values).
_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)
# An AttributeError on a JSON value ("'list' object has no attribute 'lower'") means the
# instance is of the wrong kind; on anything else it means the model itself is broken.
_INPUT_ATTRIBUTE_ERROR = re.compile(r"^'(list|dict|str|int|float|bool|NoneType)' object has no attribute")


class PredictionService:
    """A loaded model plus the request/response contract around it."""

    def __init__(
        self, model: models.EstimatorModel | models.ONNXModel, version: str, reference: str | None = None
    ) -> None:
        self.model = model
        self.version = version
        self.explainer = Explainer(model, reference)
        self.capture = CaptureSampler.from_environment()
        self._headers = {"x-lambdaserve-model-version": version}
        # route (wants_proba) -> whether batched outputs matched one-by-one calls
        self._batchable: dict[bool, bool] = {}
        # whether the decoded argmax of the probabilities is what predict answers (checked once)
        self._labels_from_proba: bool | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> PredictionService:
        location = environ.get(variables.MODEL)
        if not location:
            raise ModelLoadError(
                "LAMBDASERVE_MODEL is not set. Set it to the model file's path or to "
                "s3://bucket/key?versionId=..."
            )
        expected = environ.get(variables.MODEL_SHA256) or None
        path = source.fetch(location, expected)
        fmt = environ.get(variables.MODEL_FORMAT) or models.format_of(location)
        trusted = [t for t in environ.get(variables.TRUSTED_TYPES, "").split(",") if t]
        model = models.load_model(path, fmt, trusted)
        version = environ.get(variables.MODEL_VERSION) or (expected or source.sha256_of(path))[:12]
        service = cls(model, version, environ.get(variables.REFERENCE) or None)
        checked = environ.get(variables.PROBABILITIES)
        if isinstance(model, models.EstimatorModel) and model.route and model.route.path == checked:
            model.accept_route()  # checked on the sample when the model was packaged
        if environ.get(variables.WARM_UP):
            service.warm_up(environ[variables.WARM_UP])
        return service

    def warm_up(self, body: str) -> None:
        """Predict ``body`` once, answering nobody: the model's first-call costs are paid in INIT.

        The sample also checks a pipeline's inner classifier before its probabilities are
        used (``models.EstimatorModel.check_route``). A sample the model does not take is
        ignored: it only means no warm-up.
        """
        try:
            x = self.model.prepare(parse_event({"body": body}).instances)
            if isinstance(self.model, models.EstimatorModel):
                self.model.check_route(x)
            self.model.predict(x)
            if self.model.has_proba:
                self.model.predict_proba(x)
        except Exception:
            return

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """One invocation: one event in, one API Gateway proxy response out."""
        return self.handle_many([event], [context])[0]

    def handle_many(self, events: list[Any], contexts: list[Any]) -> list[dict[str, Any]]:
        """Several invocations answered with as few model calls as possible.

        Each event is parsed and checked on its own, so a bad request gets its own 4xx
        and nothing else. The good ones are predicted together, one model call per route,
        and the outputs split back per request. The first time a route is batched, the
        batched outputs are compared with one-by-one calls; if they differ in any way,
        that route is never batched again in this environment.
        """
        started = time.perf_counter()
        logs = [self._log_start(context) for context in contexts]
        responses: list[dict[str, Any] | None] = [None] * len(events)
        pending: dict[bool, list[tuple[int, Any, int]]] = {False: [], True: []}
        captured: dict[int, tuple[PredictionRequest, Any]] = {}  # sampled requests: request, shaped x
        for i, event in enumerate(events):
            try:
                request = parse_event(event)
                logs[i]["route"] = request.route
                if request.route == "explain":
                    responses[i] = self._explain(request, contexts[i], logs[i])
                    continue
                logs[i]["batchSize"] = len(request.instances)
                if request.wants_proba and not self.model.has_proba:
                    raise BadRequest("This model has no predict_proba. Use /predict instead.")
                x = self.model.prepare(request.instances)
                pending[request.wants_proba].append((i, x, len(request.instances)))
                if self.capture.sampled(event):
                    captured[i] = (request, x)
            except Exception as exc:
                responses[i] = self._answer_failure(exc, logs[i])
        probabilities: dict[int, Any] = {}  # of captured /predict requests, from the answering call
        for wants_proba, group in pending.items():
            if not group:
                continue
            sampled = not wants_proba and any(i in captured for i, _, _ in group)
            if sampled and self._predict_with_probabilities(group, responses, logs, probabilities, captured):
                continue
            self._predict_group(group, wants_proba, responses, logs)
        records = self._capture(captured, events, responses, logs, started, probabilities) if captured else {}
        for i, (log, response) in enumerate(zip(logs, responses, strict=True)):
            log["status"] = response["statusCode"] if response else 500
            log["level"] = "ERROR" if log["status"] >= 500 else "INFO"
            print(json.dumps(log, default=str), flush=True)
            if i in records:
                print(records[i], flush=True)
        return [r if r is not None else self._failed(RuntimeError("no response"), {}) for r in responses]

    def _capture(
        self,
        captured: dict[int, tuple[PredictionRequest, Any]],
        events: list[Any],
        responses: list[dict[str, Any] | None],
        logs: list[dict[str, Any]],
        started: float,
        known: dict[int, Any] | None = None,
    ) -> dict[int, str]:
        """The capture records of the sampled requests that were answered (``runtime/capture.py``).

        Run once every answer is decided: probabilities (or, on /predict_proba, the labels) are
        computed here, for these requests only. A failure here never touches an answer."""
        latency_ms = (time.perf_counter() - started) * 1000
        answered = {
            i: (request, x)
            for i, (request, x) in captured.items()
            if (response := responses[i]) is not None and response["statusCode"] == 200
        }
        # What the answers lack: probabilities for /predict, labels for /predict_proba, each
        # computed with one model call for all the captured requests of the message.
        extra: dict[int, Any] = dict(known or {})
        for wants_proba in (False, True):
            group = [
                (i, x, len(request.instances))
                for i, (request, x) in answered.items()
                if request.wants_proba == wants_proba and i not in extra
            ]
            if group and (wants_proba or self.model.has_proba):
                extra.update(self._capture_outputs(group, labels=wants_proba))
        records: dict[int, str] = {}
        for i, (request, _) in answered.items():
            try:
                answer = json.loads((responses[i] or {})["body"])
                if request.wants_proba:
                    predictions, probabilities = extra[i], answer
                else:
                    predictions, probabilities = answer, extra.get(i)
                record = self.capture.record(
                    request_id=logs[i]["requestId"],
                    version=self.version,
                    stage=stage_of(events[i]),
                    route=request.route,
                    instances=request.instances,
                    predictions=predictions,
                    probabilities=probabilities,
                    latency_ms=latency_ms,
                    api_request_id=api_request_id_of(events[i]),
                )
            except Exception as exc:
                logs[i]["captureError"] = f"{type(exc).__name__}: {_first_line(exc)}"
                continue
            if record is None:
                logs[i]["captureSkipped"] = 1  # over 64 KB
            else:
                records[i] = record
        return records

    def _predict_with_probabilities(
        self,
        group: list[tuple[int, Any, int]],
        responses: list[dict[str, Any] | None],
        logs: list[dict[str, Any]],
        probabilities: dict[int, Any],
        captured: Mapping[int, Any],
    ) -> bool:
        """Answer a /predict group that holds captured requests with one predict_proba call:
        the labels are the decoded argmax, the captured requests' probabilities come with them,
        and capture costs no second model call. Used only where, on the first such group, the
        labels equal predict's answers exactly (checked with one predict call, once); False
        when not used, and the group is answered as any other."""
        model = self.model
        if self._labels_from_proba is False or not model.has_proba or model.classes is None:
            return False
        started = time.perf_counter()
        try:
            import numpy as np

            x = model.concat([x for _, x, _ in group]) if len(group) > 1 else group[0][1]
            rows = np.asarray(model.probability_rows(x), dtype=float)
            classes = model.classes
            labels = [classes[int(k)] for k in rows.argmax(axis=1)]
            if self._labels_from_proba is None:
                self._labels_from_proba = to_json(labels) == to_json(model.predict(x))
                if not self._labels_from_proba:
                    return False
        except Exception:
            self._labels_from_proba = False  # answered the usual way, where errors get their status
            return False
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        names = [str(c) for c in classes]
        offset = 0
        for i, _, size in group:
            responses[i] = proxy_response(200, labels[offset : offset + size], self._headers)
            logs[i]["predictMs"] = elapsed_ms
            if len(group) > 1:
                logs[i]["batchedWith"] = len(group)
            if i in captured:
                probabilities[i] = [
                    dict(zip(names, r, strict=True)) for r in rows[offset : offset + size].tolist()
                ]
            offset += size
        return True

    def _capture_outputs(self, group: list[tuple[int, Any, int]], labels: bool) -> dict[int, Any]:
        """Labels (``labels``) or probabilities of the captured requests, as JSON values: one
        model call for the group, else one per request; a request whose call fails has none."""
        call = self.model.predict if labels else self.model.predict_proba
        found: dict[int, Any] = {}
        if len(group) > 1:
            try:
                combined = jsonable(call(self.model.concat([x for _, x, _ in group])))
                offset = 0
                for i, _, size in group:
                    found[i] = combined[offset : offset + size]
                    offset += size
                if offset == len(combined):
                    return found
            except Exception:
                pass
            found = {}
        for i, x, _ in group:
            with contextlib.suppress(Exception):
                found[i] = jsonable(call(x))
        return found

    def _log_start(self, context: Any) -> dict[str, Any]:
        request_id = getattr(context, "aws_request_id", None) or str(uuid.uuid4())
        return {"requestId": request_id, "modelVersion": self.version}

    def _explain(self, request: PredictionRequest, context: Any, log: dict[str, Any]) -> dict[str, Any]:
        """LIME for each instance, on its own: never batched with predictions."""
        instances, options = parse_request(request.instances)
        log["batchSize"] = len(instances)
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        seconds_left = remaining() / 1000 if callable(remaining) else None
        started = time.perf_counter()
        answers = self.explainer.explain(instances, options, seconds_left)
        log["predictMs"] = round((time.perf_counter() - started) * 1000, 3)
        log["samples"] = options.num_samples * len(instances)
        return proxy_response(200, answers, self._headers)

    def _call(self, x: Any, wants_proba: bool) -> Any:
        return self.model.predict_proba(x) if wants_proba else self.model.predict(x)

    def _predict_group(
        self,
        group: list[tuple[int, Any, int]],
        wants_proba: bool,
        responses: list[dict[str, Any] | None],
        logs: list[dict[str, Any]],
    ) -> None:
        started = time.perf_counter()
        outputs: list[Any] | None = None
        if len(group) > 1 and self._batchable.get(wants_proba, True):
            try:
                combined = self._call(self.model.concat([x for _, x, _ in group]), wants_proba)
                outputs, offset = [], 0
                for _, _, size in group:
                    outputs.append(combined[offset : offset + size])
                    offset += size
            except Exception:
                outputs = None  # one request spoils the batch: answer each on its own below
            if outputs is not None and wants_proba not in self._batchable:
                single = [self._call(x, wants_proba) for _, x, _ in group]
                self._batchable[wants_proba] = [to_json(o) for o in outputs] == [to_json(o) for o in single]
                outputs = outputs if self._batchable[wants_proba] else single
        elapsed_ms = (time.perf_counter() - started) * 1000
        for n, (i, x, _) in enumerate(group):
            try:
                if outputs is not None:
                    output = outputs[n]
                else:
                    one_started = time.perf_counter()
                    output = self._call(x, wants_proba)
                    elapsed_ms = (time.perf_counter() - one_started) * 1000
                responses[i] = proxy_response(200, output, self._headers)
                logs[i]["predictMs"] = round(elapsed_ms, 3)
                if outputs is not None:
                    logs[i]["batchedWith"] = len(group)
            except Exception as exc:
                responses[i] = self._answer_failure(exc, logs[i])

    def _answer_failure(self, exc: BaseException, log: dict[str, Any]) -> dict[str, Any]:
        if isinstance(exc, RequestError):
            log["error"] = exc.message
            return proxy_response(exc.status, exc.body, self._headers)
        if _is_not_fitted(exc):  # a broken model, not bad input: often a library mismatch
            return self._failed(exc, log, hint="the model reports it is not fitted")
        if _is_input_error(exc):
            message = _first_line(exc).rstrip(".")
            log["error"] = message
            return proxy_response(
                422,
                {
                    "error": f"The model rejected the input: {message}. Check each instance's "
                    "values and types against what the model was trained on."
                },
                self._headers,
            )
        return self._failed(exc, log)

    def _failed(self, exc: BaseException, log: dict[str, Any], hint: str = "") -> dict[str, Any]:
        # The caller learns only that it failed and how to find out why; the log has the rest.
        log["errorType"] = type(exc).__name__
        log["errorMessage"] = _first_line(exc) + (f" ({hint})" if hint else "")
        log["stackTrace"] = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return proxy_response(
            500,
            {"error": f"The model failed to predict. Look up request {log['requestId']} in the logs."},
            self._headers,
        )

    def summarize_reference(self, rows: Any, columns: Any = None) -> dict[str, Any]:
        """The statistics of a model's training data, from rows as ``/predict`` takes them: the
        ``drift`` section (``distributions.py``: bins per feature and of the model's predictions
        on the rows) for every model, and for tabular models also what ``/explain`` needs
        (``reference.py``). Asked by the package step with a direct invocation
        (``{"lambdaserve": "reference", "rows": [...]}``), never through API Gateway."""
        from lambdaserve.runtime.distributions import summarize_drift
        from lambdaserve.runtime.reference import summarize_reference

        if not isinstance(rows, list) or not rows:
            return {"error": "The reference holds no rows."}
        try:
            rows = self._reference_texts(rows)
            kind = instance_kind(rows)
            x = self.model.prepare(rows)
            predictions = json.loads(to_json(self.model.predict(x)))
            names = self.model.feature_names or (list(columns) if isinstance(columns, list) else None)
            drift = summarize_drift(rows, predictions if isinstance(predictions, list) else None, names)
            if kind == "text":  # LIME removes words from the text itself: it needs no statistics
                return {"reference": {"format": 1, "n_rows": len(rows), "input": "text", "drift": drift}}
            matrix = [[r[n] for n in names] for r in rows] if kind == "record" and names else rows
            try:
                lime = summarize_reference(matrix, names)
            except ValueError as exc:  # e.g. string categories: drift takes them, LIME's bins do not
                lime = {"format": 1, "n_rows": len(rows), "input": kind, "explain": str(exc)}
            return {"reference": {**lime, "drift": drift}}
        except (RequestError, ValueError) as exc:
            return {"error": exc.message if isinstance(exc, RequestError) else str(exc)}

    def _reference_texts(self, rows: list[Any]) -> list[Any]:
        """A text model's reference read from a CSV arrives as objects: its ``text`` column
        (or its only column) is the texts."""
        if self.model.feature_names is not None or self.model.n_features is not None:
            return rows
        if not all(isinstance(r, dict) for r in rows):
            return rows
        keys = list(rows[0])
        column = "text" if "text" in keys else keys[0] if len(keys) == 1 else None
        if column is not None and all(isinstance(r.get(column), str) for r in rows):
            return [r[column] for r in rows]
        return rows

    def describe(self) -> dict[str, Any]:
        """What a bundle records about the model: used by the package step's smoke test."""
        model = self.model
        return {
            "version": self.version,
            "has_proba": model.has_proba,
            "feature_names": model.feature_names,
            "n_features": model.n_features,
            "classes": [str(c) for c in model.classes] if model.classes is not None else None,
            "probabilities": model.probability_source(),
        }


def _is_input_error(exc: BaseException) -> bool:
    if isinstance(exc, AttributeError):
        return bool(_INPUT_ATTRIBUTE_ERROR.match(str(exc)))
    return isinstance(exc, _INPUT_ERRORS)


def _is_not_fitted(exc: BaseException) -> bool:
    return any(cls.__name__ == "NotFittedError" for cls in type(exc).__mro__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


_service: PredictionService | None = None


def get_service() -> PredictionService:
    """The execution environment's service, loaded on first use if INIT did not run."""
    global _service
    if _service is None:
        _service = PredictionService.from_environment()
    return _service


def handler(event: Any, context: Any) -> dict[str, Any]:
    if is_keep_warm(event):
        # The keep-warm schedule only needs INIT done and the environment kept: no prediction.
        return {"warm": True, "version": get_service().version}
    if isinstance(event, dict) and event.get("lambdaserve") == "reference":
        return get_service().summarize_reference(event.get("rows"), event.get("columns"))
    return get_service().handle(event, context)


def is_keep_warm(event: Any) -> bool:
    """The event of ``deploy --keep-warm``'s EventBridge rule (or a plain scheduled event)."""
    return isinstance(event, dict) and (
        event.get("lambdaserve") == "warm" or event.get("detail-type") == "Scheduled Event"
    )


def after_restore() -> None:
    """Run in each environment forked from a template (the local gateway's SnapStart-like
    restore): the warm-up again, so the new environment's first request finds warm pages."""
    if _service is not None and os.environ.get(variables.WARM_UP):
        _service.warm_up(os.environ[variables.WARM_UP])


def handle_batch(events: list[Any], contexts: list[Any]) -> list[dict[str, Any]]:
    """Entry point for the local gateway's batching mode: several events, one model call."""
    return get_service().handle_many(events, contexts)


# INIT: load at import time, as a Lambda runtime imports the handler module before the
# first invocation. Without LAMBDASERVE_MODEL the module stays importable (for tests and
# tools); the first call then says what is missing.
if os.environ.get(variables.MODEL):
    get_service()
