"""The CLI as a user drives it: package, inspect, invoke; through CliRunner and as a process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sklearn
from typer.testing import CliRunner

from lambdaserve.cli.app import app

EVENTS = Path(__file__).resolve().parent.parent / "events"
RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def topics_bundle(text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("bundles") / "topics"
    code, _, stderr = run(
        "package", str(text_model), "--sample", '["the rocket reached orbit"]', "-o", str(bundle)
    )
    assert code == 0, stderr
    return bundle


@pytest.mark.parametrize("command", ["package", "inspect", "invoke"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, stdout, _ = run(command, "--help")
    assert code == 0
    assert "Example" in stdout
    assert f"lambdaserve {command}" in stdout


def test_package_writes_a_bundle_with_everything_the_manifest_promises(
    topics_bundle: Path, text_model: Path
) -> None:
    manifest = json.loads((topics_bundle / "lambdaserve.json").read_text())
    model_bytes = (topics_bundle / "topics.pickle").read_bytes()
    assert model_bytes == text_model.read_bytes()
    assert manifest["name"] == "topics"
    assert manifest["format"] == "pickle"
    assert manifest["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert manifest["size"] == len(model_bytes)
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"scikit-learn=={sklearn.__version__}" in manifest["requirements"]
    assert any(r.startswith("cloudpickle==") for r in manifest["requirements"])
    assert manifest["sample_input"] == ["the rocket reached orbit"]
    assert manifest["sample_output"] == ["space"]
    assert manifest["has_proba"] is True
    assert manifest["classes"] == ["religion", "space"]
    assert set(manifest["sample_proba"][0]) == {"religion", "space"}
    assert manifest["scan"]["by_value"]["classes"] == ["TopicClassifier"]
    assert manifest["created"].endswith("+00:00")


def test_inspect_shows_a_bundle_and_its_json(topics_bundle: Path) -> None:
    code, stdout, _ = run("inspect", str(topics_bundle))
    assert code == 0
    assert "Bundle topics" in stdout
    assert "TopicClassifier" in stdout
    code, stdout, _ = run("inspect", str(topics_bundle), "--json")
    assert json.loads(stdout)["manifest"]["name"] == "topics"


def test_invoke_prints_lambda_lines_on_stderr_and_the_result_on_stdout(topics_bundle: Path) -> None:
    code, stdout, stderr = run("invoke", str(topics_bundle), "--data", '["a prayer in church"]')
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == ["religion"]
    lines = stderr.splitlines()
    assert lines[0].startswith("START RequestId: ")
    assert any(line.startswith("END RequestId: ") for line in lines)
    report = next(line for line in lines if line.startswith("REPORT RequestId: "))
    assert "\tInit Duration: " in report


def test_invoke_replays_a_real_api_gateway_event_file(topics_bundle: Path) -> None:
    code, stdout, _ = run(
        "invoke", str(topics_bundle), "--event", str(EVENTS / "apigw-rest-post.json"), "--json"
    )
    assert code == 0
    output = json.loads(stdout)
    assert output["status"] == "ok"
    assert json.loads(output["result"]["body"]) == ["religion"]
    assert output["report"]["initDurationMs"] > 0
    assert output["environment"]["isolated"] is False


def test_invoke_exits_non_zero_when_the_handler_answers_4xx(topics_bundle: Path) -> None:
    code, stdout, _ = run("invoke", str(topics_bundle), "--data", "not json")
    assert code == 1
    result = json.loads(stdout)
    assert result["statusCode"] == 400
    assert "not valid JSON" in json.loads(result["body"])["error"]


def test_invoke_takes_records_for_a_dataframe_model(iris_models: dict[str, Path]) -> None:
    code, stdout, stderr = run("invoke", str(iris_models["pickle"]), "--data", json.dumps([RECORD]))
    assert code == 0, stderr
    assert json.loads(json.loads(stdout)["body"]) == ["setosa"]


def test_a_bundle_whose_model_file_changed_is_refused(topics_bundle: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for item in topics_bundle.iterdir():
        (tampered / item.name).write_bytes(item.read_bytes())
    with (tampered / "topics.pickle").open("ab") as f:
        f.write(b"\0")
    code, _, stderr = run("invoke", str(tampered), "--data", '["orbit"]')
    assert code == 1
    assert "sha256" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["package", "missing.pickle"], "is not a file"),
        (["package", "model.txt"], "is not a file"),
        (["inspect", "examples"], "is not a bundle"),
        (["invoke", "missing.pickle", "--data", "[1]"], "is not a file"),
        (["package", "{iris}", "--sample", "[oops"], "--sample is not valid JSON"),
        (["package", "{iris}", "--sample", '["text"]', "--env", "local"], "The model failed on the sample"),
        (["package", "{iris}", "--env", "sometimes"], "Unknown --env"),
        (["package", "{iris}", "--name", "Bad Name!"], "not a valid model name"),
        (["package", "{iris}", "-r", "scikit-learn>=1"], "Bad --requirement"),
        (["invoke", "{iris}"], "Give exactly one of --data and --event"),
        (["invoke", "{iris}", "--event", "missing.json"], "Cannot read the event file"),
    ],
)
def test_bad_input_gets_a_clear_error_and_no_traceback(
    args: list[str], words: str, iris_models: dict[str, Path], tmp_path: Path
) -> None:
    argv = [a.replace("{iris}", str(iris_models["pickle"])) for a in args]
    if argv[0] == "package":
        argv += ["-o", str(tmp_path / "bundle")]
    code, stdout, stderr = run(*argv)
    assert code == 1
    assert words in stderr
    assert "Traceback" not in stderr + stdout


def test_the_installed_command_prints_one_json_object(topics_bundle: Path) -> None:
    # GIVEN the console script, as a user's shell runs it
    command = [str(Path(sys.executable).with_name("lambdaserve")), "invoke", str(topics_bundle)]
    # WHEN it invokes with --json
    done = subprocess.run(
        [*command, "--data", '["the shuttle launch"]', "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    # THEN stdout is exactly one JSON object and the exit code says it worked
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert json.loads(output["result"]["body"]) == ["space"]
    assert output["logs"][-1].startswith("REPORT RequestId: ")


def test_a_model_needing_a_module_that_is_not_installed_says_which_and_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a model whose class lives in a package that is installed where it was made only
    (tmp_path / "lsfixture_models.py").write_text(
        "class Model:\n    def predict(self, x):\n        return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import lsfixture_models  # type: ignore[import-not-found]

    path = tmp_path / "model.pickle"
    path.write_bytes(__import__("pickle").dumps(lsfixture_models.Model()))
    monkeypatch.delitem(sys.modules, "lsfixture_models")
    (tmp_path / "lsfixture_models.py").unlink()
    # WHEN it is inspected, then invoked in this Python
    _, report, _ = run("inspect", str(path))
    refused, _, refusal = run("invoke", str(path), "--env", "local", "--data", '["x"]')
    code, _, stderr = run("invoke", str(path), "--env", "local", "--data", '["x"]', "--trust")
    # THEN the report says the version is unknown and how to pin it; a class from a package
    # lambdaserve does not know is refused unless trusted; trusted, the failure names the
    # module, the package, and the way out
    assert "lsfixture_models" in report
    assert "--requirement lsfixture_models==VERSION" in report
    assert refused == 1
    assert "lsfixture_models.Model: not on the allow-list" in " ".join(refusal.split())
    assert code == 1
    assert "needs the module 'lsfixture_models'" in stderr
    assert "from lsfixture_models" in stderr
    assert "--env auto" in stderr
    assert "Traceback" not in stderr


def test_with_json_an_error_is_one_json_object_on_stdout(tmp_path: Path) -> None:
    code, stdout, stderr = run("invoke", str(tmp_path / "missing.pickle"), "--data", "[[1]]", "--json")
    assert code == 1
    error = json.loads(stdout)
    assert "missing.pickle" in error["error"]
    assert "Error:" in stderr  # and as text, for whoever reads the terminal
