"""The AWS commands as a user runs them: subprocesses against moto's server on 127.0.0.1.

The image is one "pushed" beforehand (--image-uri), so no builder is needed; the build and
the engine's every resource are tested in test_lambda_image.py and test_deploy_aws.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from tls_tunnel import start_tunnel

REGION = "eu-west-1"
PROJECT = "clitest"
CLI = [sys.executable, "-m", "lambdaserve"]


@pytest.fixture
def moto_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # The server runs in this process: its settings are this process's environment.
    monkeypatch.setenv("MOTO_LAMBDA_STUB_ECR", "false")
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "MOTO_LAMBDA_STUB_ECR": "false",
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        "LAMBDASERVE_HOME": str(tmp_path / "state"),
        "LAMBDASERVE_PROJECT": PROJECT,
        "COLUMNS": "200",
    }
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        env.pop(name, None)
    try:
        yield env
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        server.stop()


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise AssertionError(f"lambdaserve {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def moto_client(moto_env: dict[str, str], service: str) -> Any:
    """A boto3 client of the test's moto server, as the test itself (not the CLI) uses it."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=moto_env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


@pytest.fixture
def image_uri(moto_env: dict[str, str]) -> str:
    """An image the user built and pushed themselves."""
    ecr = moto_client(moto_env, "ecr")
    repository = ecr.create_repository(repositoryName="mine")["repository"]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "b" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName="mine", imageManifest=json.dumps(manifest), imageTag="v1")
    return f"{repository['repositoryUri']}:v1"


def test_deploy_status_promote_and_destroy_from_the_command_line(
    moto_env: dict[str, str], image_uri: str, iris_models: dict[str, Path]
) -> None:
    # GIVEN a model pushed to the local store
    cli(
        moto_env,
        "models",
        "push",
        str(iris_models["pickle"]),
        "--name",
        "iris",
        "--sample",
        "[[5.1, 3.5, 1.4, 0.2]]",
    )
    deploy = ["deploy", "iris", "--stage", "test", "--region", REGION, "--image-uri", image_uri]

    # WHEN the deploy is planned
    dry = cli(moto_env, *deploy, "--dry-run")
    # THEN the plan is printed and nothing exists yet
    assert "Plan for iris test in eu-west-1 (project clitest):" in dry.stdout
    assert "Create the function clitest-iris (256 MB, 10 s, x86_64)  [lambda create_function]" in dry.stdout
    assert "is yours (--image-uri)" in dry.stdout
    # and says which safe defaults a new stage and function get, and how to change them
    assert "each key is throttled to 10 requests/s, bursts of 10" in dry.stdout
    assert "Reserved concurrency 10" in dry.stdout
    assert "Memory 256 MB: 1.5x the" in dry.stdout
    assert as_json(cli(moto_env, "status", "--remote", "--json", "--region", REGION))["models"] == []

    # WHEN it is deployed, then deployed again without --region
    first = as_json(cli(moto_env, *deploy, "--rate", "10", "--burst", "10", "--quota", "100/DAY", "--json"))
    again = as_json(cli(moto_env, "deploy", "iris", "--stage", "test", "--image-uri", image_uri, "--json"))
    # THEN the first prints the endpoint and the key it made; the second changes nothing, and
    # keeps the key's value out of its output (CI logs): keys show --remote prints it on request
    assert first["url"].endswith(".execute-api.eu-west-1.amazonaws.com/test/iris/predict")
    assert len(first["api_key"]) >= 20
    assert (again["changed"], again["plan"], again["url"], again["api_key"]) == (
        False,
        [],
        first["url"],
        None,
    )
    assert again["api_key_id"] == first["api_key_id"]
    human = cli(moto_env, "deploy", "iris", "--stage", "test", "--image-uri", image_uri)
    assert first["api_key"] not in human.stdout
    assert "lambdaserve keys show --remote test" in human.stdout
    assert cli(moto_env, "keys", "show", "test", "--remote").stdout.strip() == first["api_key"]
    assert as_json(cli(moto_env, "keys", "show", "test", "--remote", "--json"))["value"] == first["api_key"]
    local = cli(moto_env, "keys", "show", "test", check=False)
    assert local.returncode == 1
    assert "stored as hashes" in local.stderr

    # WHEN the function has logged (moto runs no image function: the lines are put as Lambda would)
    logs = moto_client(moto_env, "logs")
    group = f"/aws/lambda/{PROJECT}-iris"
    logs.create_log_stream(logGroupName=group, logStreamName="2026/11/26/[1]abc")
    now_ms = int(time.time() * 1000)
    lines = ["START RequestId: r1 Version: 1", "END RequestId: r1", "REPORT RequestId: r1 Duration: 2.1 ms"]
    events = [{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName=group, logStreamName="2026/11/26/[1]abc", logEvents=events)
    # THEN logs --remote shows them
    shown = [
        json.loads(line)["line"]
        for line in cli(moto_env, "logs", "iris", "--remote", "--json").stdout.splitlines()
    ]
    assert shown == lines
    followed = cli(moto_env, "logs", "iris", "--remote", "--follow", "--max-seconds", "1", "--json")
    assert [json.loads(line)["line"] for line in followed.stdout.splitlines()] == lines
    # and a deploy to another region than the project's is refused
    elsewhere = cli(moto_env, "deploy", "iris", "--stage", "test", "--region", "us-east-1", check=False)
    assert "is deployed in eu-west-1, not us-east-1" in elsewhere.stderr

    # WHEN version 1 is promoted to prod on AWS
    cli(moto_env, "promote", "iris", "1", "--stage", "prod", "--remote")
    # THEN status --remote shows both stages serving version 1, with their URLs and the image
    [model] = as_json(cli(moto_env, "status", "--remote", "--json"))["models"]
    assert [(s["stage"], s["version"]) for s in model["stages"]] == [("prod", 1), ("test", 1)]
    assert model["image"] == image_uri
    assert model["stages"][1]["url"] == first["url"]
    local = cli(moto_env, "status")
    assert "On AWS (project clitest" in local.stdout

    # WHEN the project is destroyed
    removed = cli(moto_env, "destroy", "--all", "--yes")
    # THEN AWS has nothing of it
    assert "Removed project clitest from eu-west-1" in removed.stdout
    assert as_json(cli(moto_env, "destroy", "--all", "--dry-run", "--json", "--region", REGION))["plan"] == []


def test_missing_credentials_region_and_builder_are_explained(
    moto_env: dict[str, str], iris_models: dict[str, Path], tmp_path: Path
) -> None:
    cli(moto_env, "models", "push", str(iris_models["pickle"]), "--name", "iris")
    # No region anywhere
    done = cli(moto_env, "deploy", "iris", "--stage", "test", check=False)
    assert done.returncode == 1
    assert "No AWS region is set" in done.stderr
    assert "Traceback" not in done.stderr
    # No credentials
    no_keys = {
        k: v for k, v in moto_env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
    }
    done = cli(no_keys, "deploy", "iris", "--stage", "test", "--region", REGION, check=False)
    assert done.returncode == 1
    assert "No AWS credentials were found" in done.stderr
    assert "aws configure" in done.stderr
    # A stage name API Gateway refuses
    done = cli(moto_env, "deploy", "iris", "--stage", "my-stage", "--region", REGION, check=False)
    assert "cannot be an API Gateway stage name" in done.stderr
    # A builder that is not installed, when an image must be built
    done = cli(
        moto_env, "deploy", "iris", "--stage", "test", "--region", REGION, "--builder", "nosuch", check=False
    )
    assert done.returncode == 1
    assert "Unknown --builder 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_dry_run_reports_what_would_stop_the_deploy_without_a_builder(
    moto_env: dict[str, str], text_model: Path
) -> None:
    # GIVEN the post's kind of model: a class pickled by value under this Python
    cli(moto_env, "models", "push", str(text_model), "--name", "topics", "--sample", '["the rocket"]')
    no_builder = {**moto_env, "PATH": "/nonexistent"}
    python = [sys.executable, "-m", "lambdaserve"]
    # WHEN a newer Python is asked for, in a dry run on a machine with no builder
    done = subprocess.run(
        [*python, "deploy", "topics", "--stage", "test", "--region", REGION, "--python", "3.14", "--dry-run"],
        env=no_builder, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    # THEN it stops, saying the pickled code needs its own Python, and writes nothing
    assert done.returncode == 1
    assert "carries code pickled by value" in done.stderr
    assert "Traceback" not in done.stderr
    # AND without it, the plan shows the image on Amazon Linux 2023 and says no builder is here
    plan = subprocess.run(
        [*python, "deploy", "topics", "--stage", "test", "--region", REGION, "--dry-run", "--json"],
        env=no_builder, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    answer = json.loads(plan.stdout)
    notes = " ".join(answer["notes"])
    assert "public.ecr.aws/lambda/provided:al2023" in notes
    assert "Amazon Linux 2" in notes
    assert "The image cannot be built here" in notes
    assert any("Build the image py" in step for step in answer["plan"])


def test_loadtest_and_cost_remote_find_the_deployed_stage_its_key_and_its_report_lines(
    moto_env: dict[str, str], image_uri: str, iris_models: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN iris deployed to prod, and a stand-in for its endpoint (moto has no API Gateway
    # data plane): an HTTPS proxy that answers for *.execute-api.eu-west-1.amazonaws.com
    sample = "[[5.1, 3.5, 1.4, 0.2]]"
    cli(moto_env, "models", "push", str(iris_models["pickle"]), "--name", "iris", "--sample", sample)
    deployed = as_json(cli(moto_env, "deploy", "iris", "--stage", "prod", "--region", REGION,
                           "--image-uri", image_uri, "--json"))  # fmt: skip
    # WHEN cost --remote runs before the function has logged anything
    empty = cli(moto_env, "cost", "iris", "--remote", "--stage", "prod", check=False)
    # THEN it says there is no REPORT line and how to get some
    assert empty.returncode == 1
    assert "No REPORT line in" in " ".join(empty.stderr.split())
    assert "lambdaserve loadtest iris --remote --stage prod" in " ".join(empty.stderr.split())

    # WHEN the function has logged REPORT lines (as Lambda would: moto runs no image function),
    # from the version prod runs and from $LATEST
    logs = moto_client(moto_env, "logs")
    group = f"/aws/lambda/{PROJECT}-iris"
    # (stamped ahead: the load test below counts the cold starts CloudWatch has since it began)
    now_ms = int(time.time() * 1000) + 600_000
    streams = {
        f"2026/12/03/[{deployed['lambda_version']}]abc": [
            "REPORT RequestId: r1\tDuration: 812.50 ms\tBilled Duration: 2400 ms\tMemory Size: 512 MB\t"
            "Max Memory Used: 190 MB\tInit Duration: 1587.10 ms\t",
            "REPORT RequestId: r2\tDuration: 10.20 ms\tBilled Duration: 11 ms\tMemory Size: 512 MB\t"
            "Max Memory Used: 201 MB\t",
            "REPORT RequestId: r3\tDuration: 12.00 ms\tBilled Duration: 12 ms\tMemory Size: 512 MB\t"
            "Max Memory Used: 200 MB\t",
        ],
        "2026/12/03/[$LATEST]def": [
            "REPORT RequestId: r4\tDuration: 99.00 ms\tBilled Duration: 99 ms\tMemory Size: 512 MB\t"
            "Max Memory Used: 100 MB\t",
        ],
    }
    for stream, lines in streams.items():
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        events = [{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    tunnel = start_tunnel(tmp_path, REGION, b'["setosa"]')
    env = {k: v for k, v in moto_env.items() if k.lower() not in ("no_proxy", "http_proxy", "all_proxy")}
    env.update(
        {"HTTPS_PROXY": tunnel.proxy, "https_proxy": tunnel.proxy, "SSL_CERT_FILE": str(tunnel.ca_file)}
    )
    load = ["loadtest", "iris", "--remote", "--stage", "prod", "-c", "1", "-d", "1", "--warmup", "0"]
    try:
        # WHEN a load test of the deployed stage runs
        run = cli(env, *load)
        summary = as_json(cli(env, *load, "--json"))
        # THEN its requests went to the URL deploy recorded, with the stage's key and the sample
        host, _, path = deployed["url"].removeprefix("https://").partition("/")
        assert {(s.host, s.method, s.path) for s in tunnel.seen} == {(host, "POST", f"/{path}")}
        assert {s.headers["x-api-key"] for s in tunnel.seen} == {deployed["api_key"]}
        assert {s.body for s in tunnel.seen} == {sample.encode()}
        # AND it says what a remote run can and cannot tell, and never prints the key
        text = " ".join(run.stdout.split())
        assert "What this remote run can tell" in text
        assert "API Gateway's own time" in text
        assert "key sent: the stage's key in API Gateway" in text
        assert "cannot tell: Lambda's own durations" in text
        # AND the cold starts are prod's REPORT lines with an Init Duration since the run began
        assert "cold starts during the run: 1" in text
        assert summary["cold_starts"] == 1
        assert deployed["api_key"] not in run.stdout + run.stderr
        assert (summary["where"], summary["stage"], summary["region"]) == ("aws", "prod", REGION)
        assert summary["statuses"] == {"200": summary["requests"]}
        assert deployed["api_key"] not in json.dumps(summary)
        # AND a stage never deployed, and a stage whose key is gone, say how to go on
        never = cli(env, "loadtest", "iris", "--remote", "--stage", "staging", check=False)
        assert never.returncode == 1
        assert "was never deployed to the stage 'staging'" in " ".join(never.stderr.split())
        assert "lambdaserve deploy iris --stage staging" in " ".join(never.stderr.split())
        apigateway = moto_client(moto_env, "apigateway")
        apigateway.delete_api_key(apiKey=deployed["api_key_id"])
        keyless = cli(env, *load, check=False)
        assert keyless.returncode == 1
        assert "No API key is known for the stage 'prod'" in " ".join(keyless.stderr.split())
        assert "--api-key KEY" in " ".join(keyless.stderr.split())
        tunnel.seen.clear()
        given = cli(env, *load, "--api-key", "a-key-of-my-own", "--json")
        assert as_json(given)["requests"] > 0
        assert as_json(given)["key_source"] == "--api-key or LAMBDASERVE_API_KEY"
        assert {s.headers["x-api-key"] for s in tunnel.seen} == {"a-key-of-my-own"}
    finally:
        tunnel.stop()

    # THEN cost --remote --stage prices from prod's version only, at the function's memory
    priced = as_json(cli(moto_env, "cost", "iris", "--remote", "--stage", "prod", "--json"))
    measured = priced["measured"]
    assert (measured["source"], measured["invocations"], measured["duration_ms"]) == ("cloudwatch", 3, 12.0)
    assert (measured["cold"], measured["init_ms"], measured["billed_ms"]) == (1, 1587.1, 12.0)
    assert (measured["memory_mb"], measured["max_memory_used_mb"]) == (512, 201)
    assert (priced["workload"]["memory_mb"], priced["region"]) == (512, REGION)
    every = as_json(cli(moto_env, "cost", "iris", "--remote", "--json"))
    assert every["measured"]["invocations"] == 4
    text = " ".join(cli(moto_env, "cost", "iris", "--remote", "--stage", "prod").stdout.split())
    assert f"durations from: the deployed function's REPORT lines in CloudWatch Logs: {group}" in text
    assert "Memory Size 512 MB, Max Memory Used up to 201 MB" in text


def test_capture_pull_drift_and_feedback_read_the_deployed_functions_captures_in_cloudwatch(
    moto_env: dict[str, str], iris_models: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN iris pushed here with a reference, and its function's log stream on AWS holding
    # capture records among its other lines (as the handler prints them; moto runs no image)
    rows = tmp_path / "iris.csv"
    from sklearn.datasets import load_iris

    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows.write_text(
        ",".join(names) + "\n" + "".join(",".join(f"{v:.1f}" for v in r) + "\n" for r in iris.data)
    )
    sample = json.dumps([dict(zip(names, iris.data[0].tolist(), strict=True))])
    cli(moto_env, "models", "push", str(iris_models["pickle"]), "--name", "iris", "--sample", sample,
        "--reference", str(rows))  # fmt: skip
    logs = moto_client(moto_env, "logs")
    group = f"/aws/lambda/{PROJECT}-iris"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/12/03/[1]abc")
    now_ms = int(time.time() * 1000)
    stamp = datetime.fromtimestamp(now_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
    shifted = [dict(zip(names, [v + 3.0 for v in r], strict=True)) for r in iris.data[:60].tolist()]
    lines = ["START RequestId: r0 Version: 1"]
    for n, instance in enumerate(shifted):
        lines.append(
            json.dumps(
                {
                    "lambdaserveCapture": 1, "time": stamp.replace("+00:00", "Z"), "requestId": f"l{n}",
                    "apiRequestId": f"a{n}", "version": "1", "stage": "prod", "route": "predict",
                    "instances": [instance], "predictions": ["virginica"], "probabilities": None,
                    "latencyMs": 1.0,
                }
            )
        )  # fmt: skip
    lines.append("REPORT RequestId: r0\tDuration: 1.00 ms\tBilled Duration: 1 ms\t")
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2026/12/03/[1]abc",
        logEvents=[{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)],
    )
    remote = ["--remote", "--region", REGION]
    # WHEN the captures are pulled THEN exactly the records come back, not the other lines
    pulled = tmp_path / "pulled.jsonl"
    cli(moto_env, "capture", "pull", "iris", *remote, "-o", str(pulled))
    records = [json.loads(line) for line in pulled.read_text().splitlines()]
    assert [r["requestId"] for r in records] == [f"l{n}" for n in range(60)]
    # AND drift compares them with the reference: every feature moved by 3 reads as a shift
    report = as_json(cli(moto_env, "drift", "iris", *remote, "--json"))
    assert (report["source"], report["records"]) == ("aws", 60)
    [window] = report["windows"]
    readings = {f["name"]: f["reading"] for f in window["features"]}
    assert readings["petal_length"] == "shift"
    # AND labels named by API Gateway's ids are scored against them: 20 of 60 right
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "request_id,label\n" + "".join(f"a{n},{'virginica' if n < 20 else 'setosa'}\n" for n in range(60))
    )
    scored = as_json(cli(moto_env, "feedback", "iris", "--file", str(labels), *remote, "--json"))
    assert (scored["matched"], scored["versions"]["1"]["labelled"]) == (60, 60)
    assert scored["versions"]["1"]["value"] == pytest.approx(1 / 3)
