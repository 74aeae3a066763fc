"""Warm-ups: the sample a function's INIT predicts once, and the idle priority of an INIT
that nobody waits for (a stage's next version, initialised before the stage flips)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from lambdaserve.runtime.handler import PredictionService
from lambdaserve.runtime.variables import warm_up_variable


def test_the_warm_up_variable_holds_a_small_sample_and_nothing_else() -> None:
    assert warm_up_variable(None, 1024) == {}
    assert warm_up_variable(["the rocket reached orbit"], 1024) == {
        "LAMBDASERVE_WARM_UP": '["the rocket reached orbit"]'
    }
    assert warm_up_variable(["x" * 2000], 1024) == {}  # over Lambda's share of its 4 KB


@pytest.mark.parametrize("sample", ['["the rocket reached orbit"]', "[[1, 2, 3]]", "not json", "[]"])
def test_init_with_a_warm_up_sample_loads_whatever_the_sample(text_model: Path, sample: str) -> None:
    environ = {"LAMBDASERVE_MODEL": str(text_model), "LAMBDASERVE_WARM_UP": sample}
    service = PredictionService.from_environment(environ)
    answer = service.handle({"body": '["the rocket reached orbit"]'})
    assert json.loads(answer["body"]) == ["space"]


def test_a_background_init_runs_at_idle_priority_and_leaves_it_where_it_may() -> None:
    script = (
        "import os; os.environ['LAMBDASERVE_INIT_IDLE'] = '1'\n"
        "from lambdaserve.runtime import forkserver as f\n"
        "began = f._init_in_background(); during = os.sched_getscheduler(0)\n"
        "f._leave_background()\n"
        "print(began, during == os.SCHED_IDLE, os.sched_getscheduler(0) == os.SCHED_OTHER,"
        " 'LAMBDASERVE_INIT_IDLE' in os.environ)\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    may = os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20
    # idle only where normal priority can be taken back; always normal after; never inherited
    assert shown.split() == [str(may), str(may), "True", "False"]
