"""``lambdaserve export cloudformation`` as a user drives it, from a store with pushed models.

The models are tiny scikit-learn classifiers pushed through the CLI once per module; each
test works on its own copy of that state directory, in a folder named ``shop`` (the
project's name). Nothing here talks to AWS.
"""

from __future__ import annotations

import json
import pickle
import shutil
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from lambdaserve.cli.app import app
from lambdaserve.cli.export_command import export_app
from lambdaserve.store import Store
from lambdaserve.store.records import Deployment


def exporter() -> typer.Typer:
    """``lambdaserve export`` as cli/app.py registers it (app.add_typer(export_app, name="export"))."""
    cli = typer.Typer(rich_markup_mode="markdown")
    cli.add_typer(export_app, name="export")

    @cli.callback()
    def main() -> None:
        """lambdaserve"""

    return cli


def lambdaserve(state: Path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--state-dir", str(state)])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def export(state: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(exporter(), ["export", "cloudformation", *args, "--state-dir", str(state)])
    return result.exit_code, result.stdout, result.stderr


def exported(state: Path, *args: str) -> dict[str, Any]:
    code, stdout, stderr = export(state, "--region", "eu-west-1", *args)
    assert code == 0, stderr
    template: dict[str, Any] = yaml.safe_load(stdout)
    return template


def fails(state: Path, *args: str) -> str:
    """The error a user reads: exit 1, a message and how to fix it, no traceback."""
    code, stdout, stderr = export(state, *args)
    assert code == 1, stdout + stderr
    assert "How to fix:" in stderr
    assert "Traceback" not in stderr
    return " ".join(stderr.split())


def function_version(template: dict[str, Any]) -> str:
    variables = template["Resources"]["IrisFunction"]["Properties"]["Environment"]["Variables"]
    return str(variables["LAMBDASERVE_MODEL_VERSION"])


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory where iris has versions 1 and 2 and news version 1; no stage yet."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("pushed")
    state = root / "state"
    for name, labels in (("iris-1", [0, 0, 1, 1]), ("iris-2", [0, 1, 1, 1])):
        with (root / f"{name}.pickle").open("wb") as f:
            pickle.dump(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], labels), f)
    for name in ("iris-1", "iris-2"):
        lambdaserve(state, "models", "push", str(root / f"{name}.pickle"), "--name", "iris", "--env", "local")
    # news: iris's first file under another name, published as a pushed bundle is (no new check)
    with closing(Store(state)) as store:
        first = store.version("iris", 1)
        store.add_version("news", first.manifest, store.model_path(first))
    return state


@pytest.fixture
def state(pushed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pushed, tmp_path / "shop" / "state"))


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(exporter(), ["export", "cloudformation", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "lambdaserve export cloudformation -o template.yaml" in result.stdout


def test_the_template_holds_every_stage_of_the_store_with_its_canary_and_limits(state: Path) -> None:
    # GIVEN iris serves version 1 in test, and version 1 with version 2 as a 10% canary in prod
    lambdaserve(state, "promote", "iris", "1", "--stage", "test")
    lambdaserve(state, "promote", "iris", "1", "--stage", "prod")
    lambdaserve(state, "promote", "iris", "2", "--stage", "prod", "--canary", "10")
    # WHEN the user exports it with the post's usage plan
    output = state.parent / "template.yaml"
    code, stdout, stderr = export(
        state,
        "-o",
        str(output),
        "--region",
        "eu-west-1",
        "--rate",
        "10",
        "--burst",
        "10",
        "--quota",
        "100/DAY",
    )
    # THEN the template has both stages, the canary's weight and the limits
    assert code == 0, stderr
    template = yaml.safe_load(output.read_text())
    resources = template["Resources"]
    assert resources["IrisTestAlias"]["Properties"]["FunctionVersion"] == {
        "Fn::GetAtt": ["IrisVersion1", "Version"]
    }
    prod = resources["IrisProdAlias"]["Properties"]
    assert prod["FunctionVersion"] == {"Fn::GetAtt": ["IrisVersion1", "Version"]}
    assert prod["RoutingConfig"]["AdditionalVersionWeights"][0]["FunctionWeight"] == 0.1
    assert resources["ProdUsagePlan"]["Properties"]["Throttle"] == {"RateLimit": 10.0, "BurstLimit": 10}
    assert resources["ProdUsagePlan"]["Properties"]["Quota"] == {"Limit": 100, "Period": "DAY"}
    assert "News" not in " ".join(resources)  # news has no stage
    assert resources["ModelBucket"]["Properties"]["BucketName"] == {
        "Fn::Sub": "lambdaserve-shop-${AWS::AccountId}-eu-west-1"
    }
    # ... the function carries the canary, brought in last; the user is told what that means
    assert function_version(template) == "2"
    assert "serve versions 1, 2" in " ".join(stderr.split())
    # ... and the next steps name the model file to upload, which exists
    key = template["Parameters"]["IrisModelKey"]["Default"]
    (upload,) = [line for line in stdout.splitlines() if "put-object" in line]
    assert f"--key {key}" in upload
    assert Path(upload.split("--body ")[1]).is_file()
    assert "StorageOnly=false IrisModelObjectVersion=VERSION_ID" in stdout


def test_the_template_goes_to_stdout_as_yaml_and_to_a_json_file_as_json(state: Path) -> None:
    lambdaserve(state, "promote", "iris", "1", "--stage", "test")
    on_stdout = exported(state)
    output = state.parent / "template.json"
    code, _, stderr = export(state, "--region", "eu-west-1", "-o", str(output))
    assert code == 0, stderr
    assert json.loads(output.read_text()) == on_stdout
    # One release per model: nothing to warn about but the image's base, never pinned in this store
    assert "serve versions" not in stderr
    assert "Run `lambdaserve export image MODEL` first to pin it." in " ".join(stderr.split())


def test_the_image_is_the_one_export_image_or_deploy_pinned(state: Path) -> None:
    # GIVEN a base pinned by an earlier `export image` (or deploy) of the project
    lambdaserve(state, "promote", "iris", "1", "--stage", "test")
    base = {"lambdaserve:base": "public.ecr.aws/lambda/provided:al2023@sha256:" + "a" * 64}
    with closing(Store(state)) as store:
        store.record_deployment(
            Deployment(
                "shop",
                "",
                "",
                "iris",
                "*",
                1,
                "exported",
                base=json.dumps(base | {"lambdaserve:python-build": "3.11.18"}),
            )
        )
    # WHEN the project is exported
    code, stdout, stderr = export(state, "--region", "eu-west-1")
    # THEN the template names the image built on that base, and nothing is provisional
    assert code == 0, stderr
    assert stderr == ""
    template = yaml.safe_load(stdout)
    description = template["Parameters"]["IrisImageUri"]["Description"]
    assert "lambdaserve export image iris" in description
    tags = template["Resources"]["IrisFunction"]["Properties"]["Tags"]
    assert {"Key": "lambdaserve:base", "Value": base["lambdaserve:base"]} in tags


def test_the_function_carries_what_the_last_changed_stage_brought_in(state: Path) -> None:
    # GIVEN test was promoted to version 2, and later prod to version 1
    lambdaserve(state, "promote", "iris", "2", "--stage", "test")
    lambdaserve(state, "promote", "iris", "1", "--stage", "prod")  # within the same second
    # THEN the function is configured with version 1: the one this stack update introduces
    assert function_version(exported(state)) == "1"
    # AND when prod then takes version 2 as a canary, it is 2 again
    lambdaserve(state, "promote", "iris", "2", "--stage", "prod", "--canary", "10")
    assert function_version(exported(state)) == "2"


def test_model_picks_the_models_and_settings_apply_to_each(state: Path) -> None:
    lambdaserve(state, "promote", "iris", "1", "--stage", "test")
    lambdaserve(state, "promote", "news", "1", "--stage", "test")
    template = exported(
        state, "--model", "news", "--memory", "512", "--keep-warm", "--account", "123456789012"
    )
    functions = [name for name, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"]
    assert functions == ["NewsFunction"]
    assert template["Resources"]["NewsFunction"]["Properties"]["MemorySize"] == 512
    assert "NewsTestKeepWarmRule" in template["Resources"]
    assert (
        template["Resources"]["ModelBucket"]["Properties"]["BucketName"]
        == "lambdaserve-shop-123456789012-eu-west-1"
    )


def test_errors_say_how_to_fix_them(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Push and promote one first" in fails(state, "--region", "eu-west-1")
    lambdaserve(state, "promote", "iris", "1", "--stage", "test")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert "Pass --region" in fails(state)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert export(state)[0] == 0  # the region from the environment, as the AWS CLI takes it
    assert "12 digits" in fails(state, "--account", "1234")
    assert "No model 'nope'" in fails(state, "--model", "nope")
    assert "lambdaserve promote news VERSION --stage test" in fails(state, "--model", "news")
    assert "needs both a rate (requests per second) and a burst" in fails(state, "--burst", "10")
    assert "COUNT/PERIOD" in fails(state, "--quota", "100/YEAR")
    assert "Lambda's range" in fails(state, "--memory", "64")
    lambdaserve(state, "promote", "iris", "2", "--stage", "test", "--canary", "10")
    assert "--provisioned-concurrency" in fails(state, "--provisioned-concurrency", "2")
    assert "No lambdaserve state" in fails(tmp_path / "nowhere")


def test_json_gives_the_template_or_what_was_written_and_an_error_as_json(
    state: Path, tmp_path: Path
) -> None:
    lambdaserve(state, "promote", "iris", "1", "--stage", "test")
    code, stdout, _ = export(state, "--region", "eu-west-1", "--json")
    assert code == 0
    printed = json.loads(stdout)
    assert printed["template"]["Resources"]["IrisFunction"]["Type"] == "AWS::Lambda::Function"
    code, stdout, _ = export(state, "--region", "eu-west-1", "--json", "-o", str(tmp_path / "t.json"))
    written = json.loads(stdout)
    assert (code, written["written"], written["format"]) == (0, str(tmp_path / "t.json"), "json")
    assert (
        json.loads((tmp_path / "t.json").read_text())["Resources"].keys()
        == printed["template"]["Resources"].keys()
    )
    # AND an error is a JSON object on stdout too, with the exit code of an error
    code, stdout, _ = export(state, "--region", "mars-1", "--json")
    assert code == 1
    assert set(json.loads(stdout)) == {"error", "hint"}
