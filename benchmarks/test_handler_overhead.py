"""What the handler and a local execution environment add to ``model.predict``.

One real test post per call, on the newsgroups model. Reported as medians and as ratios to
the in-process limit, measured in the same run; plus cold-start (INIT) time. Run with
``make bench``; results go to docs/performance.md with the machine and the date.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lambdaserve.functions.invoke import LocalFunction
from lambdaserve.functions.pythons import PythonEnvironment
from lambdaserve.runtime import models
from lambdaserve.runtime.apigw import rest_proxy_event
from lambdaserve.runtime.handler import PredictionService
from lambdaserve.runtime.variables import MODEL

pytestmark = pytest.mark.perf


def median_ms(call: Callable[[Any], Any], inputs: list[Any], rounds: int = 3) -> float:
    timings = []
    for _ in range(rounds):
        for item in inputs:
            started = time.perf_counter()
            call(item)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def test_handler_and_local_function_overhead(news_model: Path, test_posts: list[str]) -> None:
    with news_model.open("rb") as f:
        model = pickle.load(f)
    service = PredictionService(models.load_model(news_model, "pickle"), "bench")
    events = [rest_proxy_event(json.dumps([post]), model="news") for post in test_posts]

    def local_function() -> LocalFunction:
        python = PythonEnvironment(python=sys.executable, isolated=False)
        return LocalFunction(python, {MODEL: str(news_model)}, function_name="news")

    init_ms = []
    for _ in range(3):
        with local_function() as once:
            init_ms.append(once.start())
    env = local_function()
    env.start()
    try:
        in_process = median_ms(lambda post: model.predict([post]), test_posts)
        with contextlib.redirect_stdout(io.StringIO()):  # the log line, as Lambda captures it
            handler = median_ms(lambda event: service.handle(event, None), events)
        local = median_ms(env.invoke, events)
        answer = env.invoke(events[0]).payload
        in_process_again = median_ms(lambda post: model.predict([post]), test_posts)
    finally:
        env.close()
    limit = min(in_process, in_process_again)
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"model.predict in process   {limit:7.3f} ms  1.00x")
    print(f"handler.handle (event)      {handler:7.3f} ms  {handler / limit:.2f}x")
    print(f"local function (socket)     {local:7.3f} ms  {local / limit:.2f}x")
    print(f"INIT (cold start), median   {statistics.median(init_ms):7.0f} ms  of {init_ms}")
    # The timings are only worth reading if every path answered the same prediction.
    expected = model.predict([test_posts[0]]).tolist()
    assert json.loads(answer["body"]) == expected
    assert json.loads(service.handle(events[0], None)["body"]) == expected
