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

from lambdaserve.functions.pythons import PythonEnvironment
from lambdaserve.functions.worker import ExecutionEnvironment
from lambdaserve.runtime import models
from lambdaserve.runtime.apigw import rest_proxy_event
from lambdaserve.runtime.handler import PredictionService

pytestmark = pytest.mark.perf


def median_ms(call: Callable[[Any], Any], inputs: list[Any], rounds: int = 3) -> float:
    timings = []
    for _ in range(rounds):
        for item in inputs:
            started = time.perf_counter()
            call(item)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def test_handler_and_worker_overhead(news_model: Path, test_posts: list[str]) -> None:
    with news_model.open("rb") as f:
        model = pickle.load(f)
    service = PredictionService(models.load_model(news_model, "pickle"), "bench")
    events = [rest_proxy_event(json.dumps([post]), model="news") for post in test_posts]
    env = ExecutionEnvironment(
        PythonEnvironment(python=sys.executable, isolated=False),
        {"LAMBDASERVE_MODEL": str(news_model)},
        function_name="news",
    )
    init_ms = [env.start()]
    env.close()
    for _ in range(2):
        init_ms.append(env.start())
        env.close()
    env.start()
    try:
        in_process = median_ms(lambda post: model.predict([post]), test_posts)
        with contextlib.redirect_stdout(io.StringIO()):  # the log line, as Lambda captures it
            handler = median_ms(lambda event: service.handle(event, None), events)
        worker = median_ms(env.invoke, events)
        answer = env.invoke(events[0]).payload
        in_process_again = median_ms(lambda post: model.predict([post]), test_posts)
    finally:
        env.close()
    limit = min(in_process, in_process_again)
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"model.predict in process   {limit:7.3f} ms  1.00x")
    print(f"handler.handle (event)      {handler:7.3f} ms  {handler / limit:.2f}x")
    print(f"worker invoke (pipe)        {worker:7.3f} ms  {worker / limit:.2f}x")
    print(f"INIT (cold start), median   {statistics.median(init_ms):7.0f} ms  of {init_ms}")
    # The timings are only worth reading if every path answered the same prediction.
    expected = model.predict([test_posts[0]]).tolist()
    assert json.loads(answer["body"]) == expected
    assert json.loads(service.handle(events[0], None)["body"]) == expected
