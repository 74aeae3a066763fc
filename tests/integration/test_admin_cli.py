"""The admin commands as a user drives them: models, promote, rollback, plans, keys, logs.

Every test works in its own temporary state directory, never the project's ``.lambdaserve``.
``logs --follow`` runs as a real process, so new lines, rotation and Ctrl-C are what a user sees.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lambdaserve.cli.app import app
from lambdaserve.functions.logbook import LogBook, log_path
from lambdaserve.functions.package import package_model
from lambdaserve.store import Alias, Store
from lambdaserve.store.records import period_start


def run(state: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--state-dir", str(state)])
    return result.exit_code, result.stdout, result.stderr


def succeeds(state: Path, *args: str) -> str:
    code, stdout, stderr = run(state, *args)
    assert code == 0, stderr
    return stdout


def fails(state: Path, *args: str) -> str:
    """The error a user reads: exit 1, a message and how to fix it, no traceback."""
    code, stdout, stderr = run(state, *args)
    assert code == 1, stdout + stderr
    assert "Error:" in stderr
    assert "Traceback" not in stderr
    return " ".join(stderr.split())


def stage_of(state: Path, stage: str = "prod") -> tuple[int, int | None, float] | None:
    with closing(Store(state)) as store:
        alias = store.alias("iris", stage)
    return None if alias is None else (alias.version, alias.canary_version, alias.canary_weight)


def write_log(state: Path, *lines: str, model: str = "iris") -> None:
    book = LogBook(state.resolve())
    book.write(model, lines)
    book.flush()


@pytest.fixture(scope="module")
def bundles(iris_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The iris pipeline packaged twice: as a pickle and as a joblib file (different content)."""
    root = tmp_path_factory.mktemp("bundles")
    return {
        fmt: package_model(iris_models[fmt], output=root / fmt, name="iris", env_mode="local")[1]
        for fmt in ("pickle", "joblib")
    }


@pytest.fixture
def state(tmp_path: Path, bundles: dict[str, Path]) -> Path:
    """A state directory where iris has version 1 (pickle) and version 2 (joblib), and no stage."""
    directory = tmp_path / "state"
    for fmt in ("pickle", "joblib"):
        succeeds(directory, "models", "push", str(bundles[fmt]), "--name", "iris")
    return directory


# -- help --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        "models push",
        "models list",
        "models show",
        "promote",
        "rollback",
        "plans create",
        "plans list",
        "keys create",
        "keys list",
        "keys revoke",
        "logs",
        "cost",
        "loadtest",
    ],
)
def test_every_admin_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"lambdaserve {command}" in result.stdout
    assert "--max-seconds" not in result.stdout


# -- models ------------------------------------------------------------------------------
def test_pushing_the_same_file_again_publishes_nothing_and_new_content_the_next_version(
    iris_models: dict[str, Path], tmp_path: Path
) -> None:
    pickle_file, joblib_file = str(iris_models["pickle"]), str(iris_models["joblib"])
    first = succeeds(tmp_path, "models", "push", pickle_file, "--name", "iris", "--env", "local")
    assert "version 1" in first
    again = succeeds(tmp_path, "models", "push", pickle_file, "--name", "iris", "--env", "local")
    assert "unchanged: still version 1" in again
    pushed = succeeds(tmp_path, "models", "push", joblib_file, "--name", "iris", "--env", "local", "--json")
    published = json.loads(pushed)
    assert (published["version"], published["unchanged"], published["format"]) == (2, False, "joblib")
    with closing(Store(tmp_path)) as store:
        assert [v.format for v in store.versions("iris")] == ["pickle", "joblib"]
        assert store.aliases() == []


def test_pushing_never_moves_a_stage(state: Path, bundles: dict[str, Path]) -> None:
    # GIVEN prod serves version 1
    succeeds(state, "promote", "iris", "1", "--stage", "prod")
    # WHEN the pickle is pushed again after the joblib (version 2), as Lambda's PublishVersion
    # compares with the latest version only
    published = json.loads(succeeds(state, "models", "push", str(bundles["pickle"]), "-n", "iris", "--json"))
    # THEN it is version 3 and prod still serves version 1
    assert published["version"] == 3
    assert stage_of(state) == (1, None, 0.0)


def test_pushing_a_bundle_says_which_options_it_ignores(state: Path, bundles: dict[str, Path]) -> None:
    code, stdout, stderr = run(state, "models", "push", str(bundles["joblib"]), "-n", "iris", "--trust")
    assert code == 0
    assert "unchanged: still version 2" in stdout
    assert "--trust" in stderr
    assert "a bundle is used as packaged" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere.pickle", "--name", "iris"], "nowhere.pickle is not a model file or a bundle"),
        (["{tmp}", "--name", "iris"], "is not a bundle: it has no lambdaserve.json"),
        (["{model}", "--name", "Iris Flowers"], "'Iris Flowers' is not a valid model name"),
        (["{model}", "--name", "iris", "--sample", "[1,"], "--sample is not valid JSON"),
    ],
)
def test_push_explains_what_is_wrong_with_its_input(
    args: list[str], message: str, iris_models: dict[str, Path], tmp_path: Path
) -> None:
    filled = [a.format(tmp=tmp_path, model=iris_models["pickle"]) for a in args]
    error = fails(tmp_path / "state", "models", "push", *filled, "--env", "local")
    assert message in error
    assert "How to fix:" in error


def test_invoke_reports_the_version_number_serve_reports_for_the_same_file(
    state: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN iris version 1 is the pickle bundle in the store, version 2 the joblib one
    body = ("-d", "[[5.1, 3.5, 1.4, 0.2]]", "--json")
    # WHEN each bundle is invoked, and then with a state directory that holds nothing
    first = json.loads(succeeds(state, "invoke", str(bundles["pickle"]), *body))
    second = json.loads(succeeds(state, "invoke", str(bundles["joblib"]), *body))
    elsewhere = json.loads(succeeds(tmp_path / "empty", "invoke", str(bundles["joblib"]), *body))
    # THEN each answers as the version serve's stages would name; unknown, by its hash
    version = [r["result"]["headers"]["x-lambdaserve-model-version"] for r in (first, second, elsewhere)]
    sha256 = json.loads((bundles["joblib"] / "lambdaserve.json").read_text())["sha256"]
    assert version == ["1", "2", sha256[:12]]


def test_models_list_and_show_tell_the_versions_and_what_each_stage_serves(state: Path) -> None:
    succeeds(state, "promote", "iris", "1", "--stage", "prod")
    succeeds(state, "promote", "iris", "2", "--stage", "prod", "--canary", "25")
    listed = json.loads(succeeds(state, "models", "list", "--json"))["models"]
    assert [(m["name"], m["versions"], m["latest"]) for m in listed] == [("iris", 2, 2)]
    assert [(s["stage"], s["version"], s["canary_version"]) for s in listed[0]["stages"]] == [("prod", 1, 2)]
    assert "prod → version 1, canary version 2 at 25%" in succeeds(state, "models", "list")

    shown = succeeds(state, "models", "show", "iris")
    with closing(Store(state)) as store:
        first = store.version("iris", 1)
    assert first.sha256[:12] in shown
    assert "pickle" in shown
    assert "joblib" in shown
    assert "version 2 at 25%" in shown
    detail = json.loads(succeeds(state, "models", "show", "iris", "--json"))
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["versions"][0]["size"] == first.manifest["size"]


def test_models_show_names_the_models_there_are_when_one_is_unknown(state: Path) -> None:
    error = fails(state, "models", "show", "irsi")
    assert "No model 'irsi'" in error
    assert "Models here: iris." in error


@pytest.mark.parametrize(
    "args",
    [
        ["models", "list"],
        ["models", "show", "iris"],
        ["plans", "list"],
        ["keys", "list"],
        ["keys", "revoke", "k"],
    ],
)
def test_commands_that_read_refuse_a_state_directory_that_does_not_exist(
    args: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo"
    error = fails(missing, *args)
    assert f"No lambdaserve state in {missing}" in error
    assert "--state-dir" in error
    assert not missing.exists()


# -- promote and rollback ----------------------------------------------------------------
def test_a_release_goes_through_a_canary_and_rolls_back_step_by_step(state: Path) -> None:
    # GIVEN iris versions 1 and 2, and no stage
    # WHEN prod gets version 1, then a 10% canary of version 2, then version 2 alone
    assert "nothing → version 1" in succeeds(state, "promote", "iris", "1", "--stage", "prod")
    assert stage_of(state) == (1, None, 0.0)
    canary = succeeds(state, "promote", "iris", "2", "--stage", "prod", "--canary", "10")
    assert "version 1 → version 1, canary version 2 at 10%" in canary
    assert stage_of(state) == (1, 2, 10.0)
    succeeds(state, "promote", "iris", "2", "--stage", "prod")
    assert stage_of(state) == (2, None, 0.0)
    # THEN each rollback undoes one step, back to before the stage existed
    assert "→ version 1, canary version 2 at 10%" in succeeds(state, "rollback", "iris", "--stage", "prod")
    assert stage_of(state) == (1, 2, 10.0)
    succeeds(state, "rollback", "iris", "--stage", "prod")
    assert stage_of(state) == (1, None, 0.0)
    assert "the stage no longer exists" in succeeds(state, "rollback", "iris", "--stage", "prod")
    assert stage_of(state) is None
    assert "no earlier state to roll back to" in fails(state, "rollback", "iris", "--stage", "prod")


def test_stages_of_a_model_move_independently(state: Path) -> None:
    succeeds(state, "promote", "iris", "1", "--stage", "prod")
    succeeds(state, "promote", "iris", "2", "--stage", "test")
    succeeds(state, "rollback", "iris", "--stage", "test")
    assert stage_of(state, "prod") == (1, None, 0.0)
    assert stage_of(state, "test") is None


def test_a_canary_needs_a_stage_that_already_serves_a_version(state: Path) -> None:
    error = fails(state, "promote", "iris", "2", "--stage", "prod", "--canary", "10")
    assert "Stage 'prod' of 'iris' does not exist yet" in error
    assert "Promote a version first: lambdaserve promote iris VERSION --stage prod" in error
    assert stage_of(state) is None


def test_promoting_what_a_stage_already_serves_leaves_nothing_to_roll_back(state: Path) -> None:
    succeeds(state, "promote", "iris", "1", "--stage", "prod")
    succeeds(state, "promote", "iris", "2", "--stage", "prod")
    again = json.loads(succeeds(state, "promote", "iris", "2", "--stage", "prod", "--json"))
    assert again["changed"] is False
    succeeds(state, "rollback", "iris", "--stage", "prod")
    assert stage_of(state) == (1, None, 0.0)


def test_promote_json_says_what_the_stage_served_before_and_after(state: Path) -> None:
    succeeds(state, "promote", "iris", "1", "--stage", "prod")
    change = json.loads(succeeds(state, "promote", "iris", "2", "--stage", "prod", "--canary", "5", "--json"))
    assert change["changed"] is True
    assert Alias(**change["before"]).version == 1
    after = Alias(**change["after"])
    assert (after.version, after.canary_version, after.canary_weight) == (1, 2, 5.0)


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["promote", "irsi", "1", "--stage", "prod"], "No model 'irsi'", "Models here: iris."),
        (
            ["promote", "iris", "7", "--stage", "prod"],
            "Model 'iris' has no version 7.",
            "Its versions: 1, 2.",
        ),
        (
            ["promote", "iris", "1", "--stage", "_prod"],
            "'_prod' is not a valid stage name",
            "(e.g. test, prod)",
        ),
        (["promote", "iris", "2", "--stage", "prod", "--canary", "0"], "between 0 and 100", "--canary 10"),
        (["promote", "iris", "2", "--stage", "prod", "--canary", "100"], "between 0 and 100", "leave out"),
        (["promote", "iris", "1", "--stage", "prod", "--canary", "5"], "already serves version 1", "Push"),
        (["rollback", "irsi", "--stage", "prod"], "No model 'irsi'", "Models here: iris."),
        (["rollback", "iris", "--stage", "test"], "no earlier state", "lambdaserve models show iris"),
        (["rollback", "iris", "--stage", "a/b"], "'a/b' is not a valid stage name", "letters, digits"),
    ],
)
def test_promote_and_rollback_explain_what_is_wrong_and_how_to_fix_it(
    state: Path, args: list[str], message: str, fix: str
) -> None:
    succeeds(state, "promote", "iris", "1", "--stage", "prod")
    error = fails(state, *args)
    assert message in error
    assert fix in error.partition("How to fix:")[2]


# -- plans -------------------------------------------------------------------------------
def test_plans_create_and_list_show_throttle_quota_and_keys(tmp_path: Path) -> None:
    created = json.loads(
        succeeds(
            tmp_path,
            "plans",
            "create",
            "basic",
            "--rate",
            "5",
            "--burst",
            "10",
            "--quota",
            "100/day",
            "--json",
        )
    )
    assert (created["rate"], created["burst"], created["quota_limit"], created["quota_period"]) == (
        5.0,
        10,
        100,
        "DAY",
    )
    assert "burst 2" in succeeds(tmp_path, "plans", "create", "slow", "--rate", "2")
    succeeds(tmp_path, "keys", "create", "--name", "alice", "--plan", "basic")
    listed = {p["name"]: p for p in json.loads(succeeds(tmp_path, "plans", "list", "--json"))["plans"]}
    assert (listed["basic"]["id"], listed["basic"]["keys"]) == (created["id"], 1)
    assert listed["slow"]["keys"] == 0
    table = succeeds(tmp_path, "plans", "list")
    assert "5/s, burst 10" in table
    assert "100/DAY" in table


def test_a_plan_names_the_stages_its_keys_work_on_and_update_changes_them(tmp_path: Path) -> None:
    # GIVEN plans made with and without --stage
    both = json.loads(succeeds(tmp_path, "plans", "create", "partners", "--stage", "test, prod", "--json"))
    assert both["stages"] == ["test", "prod"]
    assert json.loads(succeeds(tmp_path, "plans", "create", "trial", "--json"))["stages"] == ["test"]
    assert "stages test, prod" in succeeds(tmp_path, "plans", "create", "p2", "--stage", "test,prod,test")
    assert "test, prod" in succeeds(tmp_path, "plans", "list")
    # WHEN one is moved to prod only, and another loses its throttle
    moved = json.loads(succeeds(tmp_path, "plans", "update", "trial", "--stage", "prod", "--json"))
    succeeds(tmp_path, "plans", "update", "partners", "--rate", "5", "--quota", "10/DAY")
    limits = json.loads(succeeds(tmp_path, "plans", "update", "partners", "--no-quota", "--json"))
    # THEN only what was given changed
    assert moved["stages"] == ["prod"]
    assert (limits["rate"], limits["burst"], limits["quota_limit"], limits["stages"]) == (
        5.0,
        5,
        None,
        ["test", "prod"],
    )
    # AND a key made without a plan joins "default", which works on test
    made = json.loads(succeeds(tmp_path, "keys", "create", "--name", "bob", "--json"))
    plans = {p["name"]: p for p in json.loads(succeeds(tmp_path, "plans", "list", "--json"))["plans"]}
    assert (made["plan"], plans["default"]["stages"]) == ("default", ["test"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "basic", "--stage", "prod/v2"], "'prod/v2' is not a valid stage name."),
        (["create", "basic", "--stage", " , "], "A usage plan needs at least one stage"),
        (["update", "nope", "--stage", "prod"], "No usage plan 'nope'."),
    ],
)
def test_plans_refuse_bad_stages_and_say_how_to_write_them(
    args: list[str], message: str, tmp_path: Path
) -> None:
    succeeds(tmp_path, "plans", "create", "unlimited")
    error = fails(tmp_path, "plans", *args)
    assert message in error
    assert "How to fix:" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quota", "100/YEAR"], "'100/YEAR' is not a quota."),
        (["--quota", "many/DAY"], "'many/DAY' is not a quota."),
        (["--quota", "0/DAY"], "a quota counts from 1 to 2147483647 requests per period"),
        (["--quota", "99999999999999999999999/DAY"], "a quota counts from 1 to 2147483647"),
        (["--burst", "5"], "A throttle needs both a rate (requests per second) and a burst"),
    ],
)
def test_plans_create_refuses_bad_limits_and_says_how_to_write_them(
    args: list[str], message: str, tmp_path: Path
) -> None:
    succeeds(tmp_path, "plans", "create", "unlimited")
    error = fails(tmp_path, "plans", "create", "basic", *args)
    assert message in error
    assert "How to fix:" in error
    plans = json.loads(succeeds(tmp_path, "plans", "list", "--json"))["plans"]
    assert [p["name"] for p in plans] == ["unlimited"]


def test_plans_create_refuses_a_zero_rate_and_a_name_in_use(tmp_path: Path) -> None:
    assert "The rate must be above 0" in fails(tmp_path, "plans", "create", "basic", "--rate", "0")
    succeeds(tmp_path, "plans", "create", "basic")
    assert "A plan named 'basic' exists already." in fails(tmp_path, "plans", "create", "basic")


# -- keys --------------------------------------------------------------------------------
def test_a_new_key_is_shown_once_and_the_store_accepts_it(tmp_path: Path) -> None:
    succeeds(tmp_path, "plans", "create", "basic", "--quota", "100/DAY")
    human = succeeds(tmp_path, "keys", "create", "--name", "alice", "--plan", "basic")
    value = human.split("\n")[1].strip()
    assert len(value) == 40
    assert "will not be shown again" in human
    created = json.loads(succeeds(tmp_path, "keys", "create", "--name", "bob", "--plan", "basic", "--json"))
    assert set(created) == {"id", "name", "plan", "value"}
    assert created["plan"] == "basic"
    with closing(Store(tmp_path)) as store:
        alice, bob = store.find_key(value), store.find_key(created["value"])
    assert alice is not None
    assert (alice.name, alice.enabled) == ("alice", True)
    assert bob is not None
    assert bob.id == created["id"]
    # Only hashes are kept: neither value appears in the state, nor in keys list.
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert value.encode() not in stored
    assert created["value"].encode() not in stored
    assert value not in succeeds(tmp_path, "keys", "list", "--json")


def test_a_key_without_a_plan_joins_an_unlimited_default_plan(tmp_path: Path) -> None:
    first = json.loads(succeeds(tmp_path, "keys", "create", "--name", "alice", "--json"))
    second = json.loads(succeeds(tmp_path, "keys", "create", "--name", "bob", "--json"))
    assert first["plan"] == second["plan"] == "default"
    plans = json.loads(succeeds(tmp_path, "plans", "list", "--json"))["plans"]
    assert [(p["name"], p["rate"], p["quota_limit"], p["keys"]) for p in plans] == [
        ("default", None, None, 2)
    ]


def test_keys_create_in_an_unknown_plan_says_how_to_make_one(tmp_path: Path) -> None:
    error = fails(tmp_path, "keys", "create", "--name", "alice", "--plan", "gold")
    assert "No usage plan 'gold'." in error
    assert "lambdaserve plans create" in error


def test_keys_list_shows_how_much_of_this_periods_quota_each_key_used(tmp_path: Path) -> None:
    succeeds(tmp_path, "plans", "create", "basic", "--quota", "100/DAY")
    key = json.loads(succeeds(tmp_path, "keys", "create", "--name", "alice", "--plan", "basic", "--json"))
    succeeds(tmp_path, "keys", "create", "--name", "bob")
    with closing(Store(tmp_path)) as store:
        # What the server writes: absolute counts per key and quota period.
        store.save_usage({(key["id"], period_start("DAY", time.time())): 7})
        store.save_usage({(key["id"], period_start("DAY", time.time() - 86400)): 90})
    listed = {k["name"]: k for k in json.loads(succeeds(tmp_path, "keys", "list", "--json"))["keys"]}
    assert (listed["alice"]["used"], listed["alice"]["quota"], listed["alice"]["plan"]) == (7, 100, "basic")
    assert (listed["bob"]["used"], listed["bob"]["plan"]) == (None, "default")
    assert listed["alice"]["prefix"] == key["value"][:6]
    table = succeeds(tmp_path, "keys", "list")
    assert "7 / 100 today" in table
    assert f"{key['value'][:6]}…" in table


def test_a_revoked_key_is_no_longer_enabled(tmp_path: Path) -> None:
    key = json.loads(succeeds(tmp_path, "keys", "create", "--name", "alice", "--json"))
    assert "Revoked key alice" in succeeds(tmp_path, "keys", "revoke", "alice")
    with closing(Store(tmp_path)) as store:
        found = store.find_key(key["value"])
    assert found is not None
    assert found.enabled is False
    listed = json.loads(succeeds(tmp_path, "keys", "list", "--json"))["keys"]
    assert [(k["enabled"], k["revoked"] is not None) for k in listed] == [(False, True)]
    assert "revoked" in succeeds(tmp_path, "keys", "list")
    assert "was revoked already" in fails(tmp_path, "keys", "revoke", key["id"])
    assert "every key of that name is revoked" in fails(tmp_path, "keys", "revoke", "alice")


def test_revoking_by_a_name_two_keys_share_asks_for_an_id_and_revokes_neither(tmp_path: Path) -> None:
    ids = [json.loads(succeeds(tmp_path, "keys", "create", "-n", "ci", "--json"))["id"] for _ in range(2)]
    error = fails(tmp_path, "keys", "revoke", "ci")
    assert "2 active keys are named 'ci'" in error
    assert all(i in error for i in ids)
    with closing(Store(tmp_path)) as store:
        assert all(k.enabled for k in store.api_keys())
    revoked = json.loads(succeeds(tmp_path, "keys", "revoke", ids[0], "--json"))
    assert (revoked["id"], revoked["enabled"]) == (ids[0], False)
    with closing(Store(tmp_path)) as store:
        assert [k.enabled for k in store.api_keys() if k.id == ids[1]] == [True]


def test_revoking_an_unknown_key_says_where_to_find_the_ids(tmp_path: Path) -> None:
    succeeds(tmp_path, "keys", "create", "--name", "alice")
    error = fails(tmp_path, "keys", "revoke", "alcie")
    assert "No active API key 'alcie': no such key." in error
    assert "lambdaserve keys list" in error


# -- logs --------------------------------------------------------------------------------
def test_logs_print_the_last_lines_without_the_tab_after_the_timestamp(tmp_path: Path) -> None:
    write_log(tmp_path, "START RequestId: r1 Version: 1", "predicted [bold]x[/]", "END RequestId: r1")
    shown = succeeds(tmp_path, "logs", "iris").splitlines()
    assert [line.split(" ", 1)[1] for line in shown] == [
        "START RequestId: r1 Version: 1",
        "predicted [bold]x[/]",
        "END RequestId: r1",
    ]
    stamp = shown[0].split(" ", 1)[0]
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) > datetime.now(timezone.utc) - timedelta(
        minutes=1
    )
    assert succeeds(tmp_path, "logs", "iris", "--lines", "1").splitlines() == shown[-1:]


def test_logs_json_prints_one_object_per_line(tmp_path: Path) -> None:
    write_log(tmp_path, "REPORT RequestId: r1\tDuration: 2.00 ms\tBilled Duration: 3 ms")
    (entry,) = [json.loads(line) for line in succeeds(tmp_path, "logs", "iris", "--json").splitlines()]
    assert entry["line"] == "REPORT RequestId: r1\tDuration: 2.00 ms\tBilled Duration: 3 ms"
    assert entry["timestamp"].endswith("Z")


def test_logs_since_leaves_out_older_lines(tmp_path: Path) -> None:
    # GIVEN a line from two hours ago, in the log book's format, then two lines from now
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    path = log_path(tmp_path.resolve(), "iris")
    path.parent.mkdir(parents=True)
    stamp = two_hours_ago.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    path.write_text(f"{stamp}\tolder line\n")
    write_log(tmp_path, "newer line 1", "newer line 2")
    # THEN --since 10m shows the recent lines only, and --since 3h all of them
    recent = [
        json.loads(line)["line"]
        for line in succeeds(tmp_path, "logs", "iris", "--since", "10m", "--json").splitlines()
    ]
    assert recent == ["newer line 1", "newer line 2"]
    assert len(succeeds(tmp_path, "logs", "iris", "--since", "3h").splitlines()) == 3
    assert "'a week' is not a duration" in fails(tmp_path, "logs", "iris", "--since", "a week")


def test_logs_of_a_model_that_logged_nothing_say_why_there_may_be_none(tmp_path: Path) -> None:
    error = fails(tmp_path, "logs", "iris")
    assert "Nothing logged yet for iris" in error
    assert "Is the server running" in error
    write_log(tmp_path, "hello", model="news")
    assert "Logs exist for: news." in fails(tmp_path, "logs", "iris")


@contextmanager
def following(state: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Callable[[], Any]]]:
    """``lambdaserve logs iris --follow --json`` as a process; yields it and a next-line reader."""
    command = [sys.executable, "-m", "lambdaserve", "logs", "iris", "--follow", "--json"]
    command += ["--max-seconds", "30", "--state-dir", str(state), *args]
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()])
        reader.start()

        def next_line() -> Any:
            return json.loads(lines.get(timeout=15))["line"]

        try:
            yield process, next_line
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            process.wait(timeout=15)
            reader.join(timeout=15)
        assert lines.empty()


def test_logs_follow_prints_lines_appended_after_it_started_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    write_log(tmp_path, "before")
    with following(tmp_path) as (process, next_line):
        assert next_line() == "before"
        write_log(tmp_path, "after 1", "after 2")
        assert [next_line(), next_line()] == ["after 1", "after 2"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


def test_logs_follow_carries_on_across_rotation_and_truncation(tmp_path: Path) -> None:
    write_log(tmp_path, "first")
    path = log_path(tmp_path.resolve(), "iris")
    with following(tmp_path) as (_, next_line):
        assert next_line() == "first"  # it has read the file up to here
        write_log(tmp_path, "in the old file")
        path.replace(path.with_name("iris.log.1"))  # what the log book does past 20 MB
        write_log(tmp_path, "in the new file")
        assert [next_line(), next_line()] == ["in the old file", "in the new file"]
        path.write_text("")
        write_log(tmp_path, "x")
        assert next_line() == "x"


def test_logs_follow_waits_for_a_log_file_to_appear(tmp_path: Path) -> None:
    with following(tmp_path) as (process, next_line):
        assert process.stderr is not None
        assert "Nothing logged yet for iris" in process.stderr.readline()
        write_log(tmp_path, "at last")
        assert next_line() == "at last"


def test_logs_finds_the_lines_just_rotated_away(tmp_path: Path) -> None:
    write_log(tmp_path, "old 1", "old 2")
    path = log_path(tmp_path.resolve(), "iris")
    path.replace(path.with_name("iris.log.1"))
    write_log(tmp_path, "new")
    lines = [
        json.loads(line)["line"]
        for line in succeeds(tmp_path, "logs", "iris", "-n", "2", "--json").splitlines()
    ]
    assert lines == ["old 2", "new"]


# -- cost ----------------------------------------------------------------------------------
def test_cost_prices_a_month_from_the_durations_the_gateway_measured(state: Path) -> None:
    # GIVEN iris's log holds two warm invocations and a cold one, as the gateway writes them
    write_log(
        state,
        "REPORT RequestId: a\tDuration: 2.40 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 100 MB\tInit Duration: 900.00 ms\t",
        "REPORT RequestId: b\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 100 MB\t",
        "REPORT RequestId: c\tDuration: 2.50 ms\tBilled Duration: 3 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 100 MB\t",
    )
    # WHEN a month of 3 million requests is priced
    priced = json.loads(succeeds(state, "cost", "iris", "--requests", "3M", "--json"))
    text = succeeds(state, "cost", "iris", "--requests", "3M")
    # THEN the median (2.4 ms, billed 3 ms) at deploy's memory makes the Lambda lines
    assert (priced["measured"]["duration_ms"], priced["measured"]["cold"]) == (2.4, 1)
    memory = priced["workload"]["memory_mb"]
    assert memory >= 256
    assert priced["lines"]["lambda_requests"] == pytest.approx(0.60)
    assert priced["lines"]["lambda_duration"] == pytest.approx(3e6 * 0.003 * memory / 1024 * 0.0000166667)
    assert priced["lines"]["rest_api"] == pytest.approx(10.50)
    assert "One million requests cost" in text
    assert "t3.small" in text


def test_cost_without_a_duration_says_where_to_get_one(state: Path) -> None:
    assert "has no REPORT line yet" in fails(state, "cost", "iris")
    assert "--duration-ms" in fails(state, "cost")
    assert "No prices for 'mars-1'" in fails(state, "cost", "--duration-ms", "5", "--region", "mars-1")
