"""Deploy to AWS end to end, against moto's server on 127.0.0.1 (or a real account, opt-in).

Every resource and setting is checked through boto3's describe calls, as a user would
check them in the console. Moto cannot run image functions, API Gateway's data plane,
provisioned concurrency or usage reports, so nothing here asserts on an invocation
(docs/aws.md lists what only a real account shows).

The image is "pushed" by registering a manifest for its tag in ECR: moto's Lambda
(MOTO_LAMBDA_STUB_ECR=false) refuses an ImageUri that its ECR does not have. The real
build is tested in test_lambda_image.py.

Opt-in, against a real account: LAMBDASERVE_TEST_AWS=real with credentials and a region
in the environment; the image is then built and pushed with the builder found here, and
everything is destroyed at the end.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.base import Base, base_age_days
from lambdaserve.deploy.deployer import DeployOptions, DeployResult, deploy
from lambdaserve.deploy.image import Builder
from lambdaserve.deploy.names import TAG_PROJECT, Names
from lambdaserve.deploy.permissions import ALWAYS_ALLOWED, actions_for, deployer_policy, granted
from lambdaserve.deploy.plan import Reporter, execute
from lambdaserve.deploy.remote import promote_options, remote_status, rollback_options
from lambdaserve.deploy.spec import recommended_memory
from lambdaserve.deploy.teardown import find_resources, plan_teardown
from lambdaserve.errors import LambdaserveError
from lambdaserve.store.store import Store

REAL = os.environ.get("LAMBDASERVE_TEST_AWS") == "real"
BASE_DIGEST = "sha256:" + "b" * 64
REGION = os.environ.get("AWS_REGION", "eu-west-1") if REAL else "eu-west-1"
READ_PREFIXES = ("Get", "Describe", "List", "Head")

pytestmark = [pytest.mark.aws_verified]


class Progress:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def detail(self, line: str) -> None:
        pass


class CallLog:
    """Every AWS operation the deployer sends, read from botocore's own events."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.every: list[tuple[str, str]] = []  # never cleared: what the run called, for the IAM check

    def __call__(self, region: str | None, profile: str | None) -> AWS:
        aws = AWS(region, profile)
        aws.session.events.register("before-call", self._record)
        return aws

    def _record(self, model: Any, **kwargs: Any) -> None:
        service = model.service_model.service_name
        self.operations.append(f"{service}:{model.name}")
        self.every.append(({"api-gateway": "apigateway"}.get(service, service), model.name))

    def writes(self) -> list[str]:
        return [op for op in self.operations if not op.split(":")[1].startswith(READ_PREFIXES)]


class BuilderStandIn(Builder):
    """Pins a base as a pull would (AWS's registry is out of reach), and builds nothing."""

    def pin(self, base: Base, progress: Any) -> Base:
        return replace(base, digest=BASE_DIGEST, created="2026-11-02T10:20:30Z")


class RegistryStandIn:
    """Pushes an image by registering a manifest for its tag in (moto's) ECR."""

    def __init__(self) -> None:
        self.pushed: list[str] = []

    def __call__(self, uri: str) -> dict[str, Any]:
        repository, tag = uri.split("/", 1)[1].split(":")
        config = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2}
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {**config, "digest": "sha256:" + uuid.uuid4().hex * 2},
            "layers": [],
        }
        ecr = boto3.client("ecr", region_name=REGION)
        answer = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
        self.pushed.append(uri)
        return {"imageDigest": answer["image"]["imageId"]["imageDigest"]}


@pytest.fixture
def aws_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if REAL:
        yield
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "MOTO_LAMBDA_STUB_ECR": "false",
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto's state outlives its server
        server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def project() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def run(
    store: Store, calls: CallLog, registry: RegistryStandIn | None, options: DeployOptions
) -> DeployResult:
    if REAL or registry is None:
        return deploy(store, options, Progress(), calls)

    def stand_in(aws: AWS, builder: Any, contexts: dict[str, Any], progress: Reporter) -> RegistryStandIn:
        return registry

    def builder(preferred: str | None) -> Builder:
        return BuilderStandIn("buildah", "/usr/bin/buildah")

    return deploy(store, options, Progress(), calls, stand_in, builder)


def destroy(store: Store, project: str, model: str | None = None, calls: CallLog | None = None) -> None:
    aws = (calls or CallLog())(REGION, None)
    names = Names(project, aws.account(), aws.region)
    found = find_resources(aws, names, model)
    execute(plan_teardown(aws, names, found, model), aws, Progress())


def test_deploy_creates_every_resource_then_converges_updates_and_destroys(
    aws_account: None,
    store: Store,
    project: str,
    topics_bundle: tuple[dict[str, Any], Path],
    topics_v2_bundle: tuple[dict[str, Any], Path],
) -> None:
    calls, registry = CallLog(), RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    options = DeployOptions(
        model="topics", stage="test", project=project, region=REGION, rate=10, burst=10, quota="100/DAY"
    )
    try:
        # GIVEN a pushed model; WHEN a dry run plans its deploy
        planned = run(store, calls, registry, DeployOptions(**{**options.__dict__, "dry_run": True}))
        # THEN the plan has every step and nothing was written
        assert planned.changed
        assert len(planned.plan.steps) > 20
        assert calls.writes() == []
        assert registry.pushed == []

        # WHEN it is deployed
        first = run(store, calls, registry, options)
        # THEN every resource is there, as described
        check_resources(first, project)
        # AND status --remote says which base the image was built on, and how old that base is
        [status] = remote_status(store, project, REGION, None, calls)["models"]
        assert first.base is not None
        assert (status["base"], status["architecture"]) == (first.base.reference, "x86_64")
        assert status["base_age_days"] == base_age_days(first.base.created)
        assert [(s["stage"], s["layout"]) for s in status["stages"]] == [("test", "per-stage API")]
        assert REAL or registry.pushed == [first.desired.image_uri]

        # WHEN it is deployed again with nothing changed (and no flags)
        calls.operations.clear()
        again = run(store, calls, registry, DeployOptions(model="topics", stage="test", project=project))
        # THEN no call writes, and the same endpoint and key come back
        assert not again.changed
        assert calls.writes() == []
        assert (again.url, again.api_key_id) == (first.url, first.api_key_id)
        # and the key's value was shown once, by the deploy that made it
        assert first.api_key
        assert again.api_key is None

        # WHEN a new model version is pushed and deployed
        store.add_version("topics", *topics_v2_bundle)
        calls.operations.clear()
        second = run(store, calls, registry, DeployOptions(model="topics", stage="test", project=project))
        # THEN it is uploaded, published as a new Lambda version and the alias flips; no image build
        assert REAL or registry.pushed == [first.desired.image_uri]
        assert "ecr:GetAuthorizationToken" not in calls.operations
        assert {"s3:PutObject", "lambda:PublishVersion", "lambda:UpdateAlias"} <= set(calls.writes())
        assert "lambda:CreateFunction" not in calls.operations
        lam = boto3.client("lambda", region_name=REGION)
        function = f"{project}-topics"
        assert (
            lam.get_alias(FunctionName=function, Name="test")["FunctionVersion"]
            == second.lambda_version
            != "1"
        )
        env = lam.get_function_configuration(FunctionName=function, Qualifier=second.lambda_version)
        assert env["Environment"]["Variables"]["LAMBDASERVE_MODEL_VERSION"] == "2"

        # WHEN version 2 goes to prod as a 10% canary beside version 1
        run(store, calls, registry, DeployOptions(model="topics", stage="prod", version=1, project=project))
        canary = promote_options(store, DeployOptions("topics", "prod", project=project), 2, 10.0)
        run(store, calls, registry, canary)
        # THEN the prod alias serves version 1 and weighs version 2 at 10%
        alias = lam.get_alias(FunctionName=function, Name="prod")
        assert alias["FunctionVersion"] == "1"
        assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {second.lambda_version: 0.1}
        # AND each stage is an API of its own
        apigw = boto3.client("apigateway", region_name=REGION)
        apis = {a["name"]: a["id"] for a in apigw.get_rest_apis()["items"] if project in a["name"]}
        assert set(apis) == {f"lambdaserve-{project}-test", f"lambdaserve-{project}-prod"}
        for stage, api_id in (
            ("test", apis[f"lambdaserve-{project}-test"]),
            ("prod", apis[f"lambdaserve-{project}-prod"]),
        ):
            assert [s["stageName"] for s in apigw.get_stages(restApiId=api_id)["item"]] == [stage]

        # WHEN the canary is rolled back
        run(store, calls, registry, rollback_options(store, DeployOptions("topics", "prod", project=project)))
        # THEN prod serves version 1 alone
        alias = lam.get_alias(FunctionName=function, Name="prod")
        assert (
            alias["FunctionVersion"],
            alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}),
        ) == (
            "1",
            {},
        )

        # WHEN keep-warm and the access log are turned on for test
        run(
            store,
            calls,
            registry,
            DeployOptions("topics", "test", project=project, keep_warm=True, access_logs=True),
        )
        # THEN a schedule invokes the test alias
        events = boto3.client("events", region_name=REGION)
        rule = events.describe_rule(Name=f"lambdaserve-{project}-topics-test-warm")
        assert rule["ScheduleExpression"] == "rate(5 minutes)"
        [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"].endswith(f":function:{function}:test")
        # AND the stage writes its access log to a log group of its own
        test_api = apis_of(project)[f"lambdaserve-{project}-test"]
        settings = apigw.get_stage(restApiId=test_api, stageName="test")["accessLogSettings"]
        group = f"/aws/apigateway/lambdaserve-{project}/test"
        assert settings["destinationArn"].endswith(f":log-group:{group}")
        assert json.loads(settings["format"])["status"] == "$context.status"
        logs = boto3.client("logs", region_name=REGION)
        assert [
            g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        ] == [group]
        # (the account had no CloudWatch role for API Gateway: lambdaserve's is set, once for all)
        assert apigw.get_account()["cloudwatchRoleArn"].endswith(":role/lambdaserve-apigateway-cloudwatch")
        # AND a deploy without the flags keeps both
        assert not run(store, CallLog(), registry, DeployOptions("topics", "test", project=project)).changed
    finally:
        # WHEN the project is destroyed
        destroy(store, project, calls=calls)
    # THEN nothing tagged with the project is left
    assert_nothing_left(project)
    # AND `lambdaserve iam-policy` granted every call made on the way
    needed = {action for call in calls.every for action in actions_for(*call)}
    assert (
        needed - granted(deployer_policy(project, REGION, first.desired.names.account)) - ALWAYS_ALLOWED
        == set()
    )


def check_resources(result: DeployResult, project: str) -> None:
    names = result.desired.names
    release = result.desired.release
    s3 = boto3.client("s3", region_name=REGION)
    bucket = names.bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert len(block) == 4
    assert {"Key": TAG_PROJECT, "Value": project} in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    key = f"bundles/topics/{release.sha256}{release.suffix}"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sha256"] == release.sha256

    ecr = boto3.client("ecr", region_name=REGION)
    [repository] = ecr.describe_repositories(repositoryNames=[f"lambdaserve-{project}"])["repositories"]
    assert repository["imageScanningConfiguration"]["scanOnPush"] is True

    iam = boto3.client("iam", region_name=REGION)
    role = iam.get_role(RoleName=f"lambdaserve-{project}-topics")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []
    inline = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="read-model-bundles")["PolicyDocument"]
    inline = json.loads(inline) if isinstance(inline, str) else inline
    assert inline["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"arn:aws:s3:::{bucket}/bundles/topics/*",
        }
    ]
    logs_policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="write-own-logs")[
        "PolicyDocument"
    ]
    logs_policy = json.loads(logs_policy) if isinstance(logs_policy, str) else logs_policy
    group_arn = f"arn:aws:logs:{REGION}:{names.account}:log-group:/aws/lambda/{project}-topics"
    assert logs_policy["Statement"][0]["Resource"] == [f"{group_arn}:*", f"{group_arn}:log-stream:*"]

    lam = boto3.client("lambda", region_name=REGION)
    function = f"{project}-topics"
    config = lam.get_function(FunctionName=function)
    assert config["Configuration"]["PackageType"] == "Image"
    assert config["Code"]["ImageUri"] == result.desired.image_uri
    # The defaults of a new function: memory from what the model used when packaged, a concurrency cap
    measured = release.measured_memory_mb
    assert measured
    assert (config["Configuration"]["MemorySize"], config["Configuration"]["Timeout"]) == (
        recommended_memory(measured),
        10,
    )
    assert config["Configuration"]["Architectures"] == ["x86_64"]
    assert lam.get_function_concurrency(FunctionName=function)["ReservedConcurrentExecutions"] == 10
    # and the base its image was built on, pinned by digest
    assert result.base is not None
    assert config["Tags"]["lambdaserve:base"] == result.base.reference
    assert REAL or result.base.reference == f"public.ecr.aws/lambda/provided:al2023@{BASE_DIGEST}"
    assert {k: config["Tags"][k] for k in (TAG_PROJECT, "lambdaserve:model")} == {
        TAG_PROJECT: project,
        "lambdaserve:model": "topics",
    }
    alias = lam.get_alias(FunctionName=function, Name="test")
    assert alias["FunctionVersion"] == result.lambda_version == "1"
    published = lam.get_function_configuration(FunctionName=function, Qualifier="1")
    variables = published["Environment"]["Variables"]
    version_id = head["VersionId"]
    assert variables["LAMBDASERVE_MODEL"] == f"s3://{bucket}/{key}?versionId={version_id}"
    assert variables["LAMBDASERVE_MODEL_SHA256"] == release.sha256
    logs = boto3.client("logs", region_name=REGION)
    [group] = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{function}")["logGroups"]
    assert group["retentionInDays"] == 30

    apigw = boto3.client("apigateway", region_name=REGION)
    [api] = [a for a in apigw.get_rest_apis()["items"] if a["name"] == f"lambdaserve-{project}-test"]
    assert api["tags"] == {TAG_PROJECT: project, "lambdaserve:stage": "test"}
    resources = {r["path"]: r for r in apigw.get_resources(restApiId=api["id"], embed=["methods"])["items"]}
    assert {"/topics/predict", "/topics/predict_proba"} <= set(resources)
    for path in ("/topics/predict", "/topics/predict_proba"):
        method = apigw.get_method(restApiId=api["id"], resourceId=resources[path]["id"], httpMethod="POST")
        assert method["apiKeyRequired"] is True
        integration = method["methodIntegration"]
        assert integration["type"] == "AWS_PROXY"
        assert integration["uri"].endswith(f":function:{function}:test/invocations")
    stage = apigw.get_stage(restApiId=api["id"], stageName="test")
    assert stage["tags"] == {TAG_PROJECT: project, "lambdaserve:stage": "test"}
    assert result.url == f"https://{api['id']}.execute-api.{REGION}.amazonaws.com/test/topics/predict"
    policy = json.loads(lam.get_policy(FunctionName=function, Qualifier="test")["Policy"])
    [statement] = [
        s for s in policy["Statement"] if s["Principal"] == {"Service": "apigateway.amazonaws.com"}
    ]
    source = statement["Condition"]["ArnLike"]["AWS:SourceArn"]
    assert source.endswith(f":{api['id']}/test/POST/topics/*")

    [plan] = [p for p in apigw.get_usage_plans()["items"] if p["name"] == f"lambdaserve-{project}-test"]
    assert plan["throttle"] == {"rateLimit": 10.0, "burstLimit": 10}
    assert plan["quota"]["limit"] == 100
    assert plan["quota"]["period"] == "DAY"
    assert {"apiId": api["id"], "stage": "test"} in plan["apiStages"]
    [key] = apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    assert apigw.get_api_key(apiKey=key["id"], includeValue=True)["value"] == result.api_key
    assert key["id"] == result.api_key_id

    ecr_policy = json.loads(ecr.get_repository_policy(repositoryName=f"lambdaserve-{project}")["policyText"])
    assert ecr_policy["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    lifecycle = json.loads(
        ecr.get_lifecycle_policy(repositoryName=f"lambdaserve-{project}")["lifecyclePolicyText"]
    )
    assert lifecycle["rules"][0]["selection"]["tagStatus"] == "untagged"


def assert_nothing_left(project: str) -> None:
    lam = boto3.client("lambda", region_name=REGION)
    assert [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(f"{project}-")] == []
    iam = boto3.client("iam", region_name=REGION)
    assert [r for r in iam.list_roles()["Roles"] if project in r["RoleName"]] == []
    logs = boto3.client("logs", region_name=REGION)
    assert logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{project}-")["logGroups"] == []
    assert (
        logs.describe_log_groups(logGroupNamePrefix=f"/aws/apigateway/lambdaserve-{project}/")["logGroups"]
        == []
    )
    events = boto3.client("events", region_name=REGION)
    assert events.list_rules(NamePrefix=f"lambdaserve-{project}-")["Rules"] == []
    apigw = boto3.client("apigateway", region_name=REGION)
    assert [a for a in apigw.get_rest_apis()["items"] if a.get("tags", {}).get(TAG_PROJECT) == project] == []
    assert [
        p for p in apigw.get_usage_plans()["items"] if p.get("tags", {}).get(TAG_PROJECT) == project
    ] == []
    assert [k for k in apigw.get_api_keys()["items"] if k.get("tags", {}).get(TAG_PROJECT) == project] == []
    ecr = boto3.client("ecr", region_name=REGION)
    repositories = ecr.describe_repositories()["repositories"]
    assert [r for r in repositories if r["repositoryName"] == f"lambdaserve-{project}"] == []
    s3 = boto3.client("s3", region_name=REGION)
    assert [b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(f"lambdaserve-{project}-")] == []


class FailOnce(CallLog):
    """Makes one AWS operation fail the first time it is sent, as a network cut would."""

    def __init__(self, operation: str) -> None:
        super().__init__()
        self.operation, self.failed = operation, False

    def _record(self, model: Any, **kwargs: Any) -> None:
        super()._record(model, **kwargs)
        if model.name == self.operation and not self.failed:
            self.failed = True
            raise ConnectionError(f"connection reset during {model.name}")


@pytest.mark.skipif(REAL, reason="cuts a deploy short on purpose; run against moto only")
def test_a_deploy_cut_short_is_recorded_and_the_next_run_converges(
    aws_account: None, store: Store, project: str, topics_bundle: tuple[dict[str, Any], Path]
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    options = DeployOptions(model="topics", stage="test", project=project, region=REGION)
    try:
        # GIVEN a deploy whose network fails half way (at the alias)
        with pytest.raises(LambdaserveError, match="CreateAlias"):
            run(store, FailOnce("CreateAlias"), registry, options)
        # THEN the failure is recorded
        [failed] = store.deployments(project)
        assert (failed.status, failed.version) == ("failed", 1)
        # WHEN the same deploy runs again
        calls = CallLog()
        done = run(store, calls, registry, options)
        # THEN it does only what was left, and a third run has nothing to do
        assert "lambda:CreateFunction" not in calls.writes()
        assert "lambda:CreateAlias" in calls.writes()
        assert done.url is not None
        assert not run(store, CallLog(), registry, options).changed
    finally:
        destroy(store, project)
    assert_nothing_left(project)


@pytest.mark.skipif(REAL, reason="two models: run against moto only, to keep the real run short")
def test_destroying_one_model_keeps_the_others_endpoints(
    aws_account: None,
    store: Store,
    project: str,
    topics_bundle: tuple[dict[str, Any], Path],
    iris_bundle: tuple[dict[str, Any], Path],
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    store.add_version("iris", *iris_bundle)
    try:
        # GIVEN two models of one project deployed to the same stage
        for model in ("topics", "iris"):
            run(store, CallLog(), registry, DeployOptions(model, "test", project=project, region=REGION))
        # WHEN one of them is destroyed
        destroy(store, project, "iris")
        # THEN its function, role and routes are gone, and the other's are all there
        lam = boto3.client("lambda", region_name=REGION)
        assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == [f"{project}-topics"]
        apigw = boto3.client("apigateway", region_name=REGION)
        [api] = [a for a in apigw.get_rest_apis()["items"] if a["name"] == f"lambdaserve-{project}-test"]
        paths = {r["path"] for r in apigw.get_resources(restApiId=api["id"])["items"]}
        assert paths == {"/", "/topics", "/topics/predict", "/topics/predict_proba", "/topics/explain"}
        iam = boto3.client("iam", region_name=REGION)
        assert [r["RoleName"] for r in iam.list_roles()["Roles"] if project in r["RoleName"]] == [
            f"lambdaserve-{project}-topics"
        ]
        s3 = boto3.client("s3", region_name=REGION)
        bucket = f"lambdaserve-{project}-123456789012-{REGION}"
        keys = [o["Key"] for o in s3.list_object_versions(Bucket=bucket).get("Versions", [])]
        assert keys
        assert all(k.startswith("bundles/topics/") for k in keys)
        # and redeploying the remaining model changes nothing but the stage's routes snapshot
        again = run(store, CallLog(), registry, DeployOptions("topics", "test", project=project))
        # (moto drops a stage's tags when it is redeployed, so it is tagged again there; AWS keeps them)
        operations = [s.operation for s in again.plan.steps if s.operation != "tag_resource"]  # type: ignore[union-attr]
        assert operations == ["create_deployment"]
    finally:
        destroy(store, project)
    assert_nothing_left(project)


def apis_of(project: str) -> dict[str, str]:
    apigw = boto3.client("apigateway", region_name=REGION)
    return {
        a["name"]: a["id"]
        for a in apigw.get_rest_apis()["items"]
        if a.get("tags", {}).get(TAG_PROJECT) == project
    }


def paths_of(api_id: str) -> set[str]:
    apigw = boto3.client("apigateway", region_name=REGION)
    return {r["path"] for r in apigw.get_resources(restApiId=api_id)["items"]}


@pytest.mark.skipif(REAL, reason="moto only: the real run covers the canary in the main test")
def test_a_canary_of_a_version_never_published_goes_out_on_the_first_run(
    aws_account: None,
    store: Store,
    project: str,
    topics_bundle: tuple[dict[str, Any], Path],
    topics_v2_bundle: tuple[dict[str, Any], Path],
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    store.add_version("topics", *topics_v2_bundle)
    try:
        # GIVEN prod serves version 1, and version 2 was never published to Lambda
        run(
            store,
            CallLog(),
            registry,
            DeployOptions("topics", "prod", version=1, project=project, region=REGION),
        )
        # WHEN version 2 goes to prod as a 10% canary
        canary = promote_options(store, DeployOptions("topics", "prod", project=project), 2, 10.0)
        done = run(store, CallLog(), registry, canary)
        # THEN it is published and weighed in the same run
        lam = boto3.client("lambda", region_name=REGION)
        alias = lam.get_alias(FunctionName=f"{project}-topics", Name="prod")
        published = lam.list_versions_by_function(FunctionName=f"{project}-topics")["Versions"]
        second = next(v["Version"] for v in published if " v2 " in v.get("Description", ""))
        assert (alias["FunctionVersion"], alias["RoutingConfig"]["AdditionalVersionWeights"]) == (
            "1",
            {second: 0.1},
        )
        assert done.changed
    finally:
        destroy(store, project)
    assert_nothing_left(project)


@pytest.mark.skipif(REAL, reason="two models: run against moto only, to keep the real run short")
def test_each_stage_is_an_api_of_its_own_with_only_its_models_and_its_own_key(
    aws_account: None,
    store: Store,
    project: str,
    topics_bundle: tuple[dict[str, Any], Path],
    iris_bundle: tuple[dict[str, Any], Path],
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    store.add_version("iris", *iris_bundle)
    try:
        # GIVEN topics on test and prod, and iris on test only, deployed without limits given
        results = {
            (model, stage): run(
                store, CallLog(), registry, DeployOptions(model, stage, project=project, region=REGION)
            )
            for model, stage in (("topics", "test"), ("topics", "prod"), ("iris", "test"))
        }
        # THEN test's API holds both models, prod's only topics (iris there: 403 Missing Authentication Token)
        apis = apis_of(project)
        test_api, prod_api = apis[f"lambdaserve-{project}-test"], apis[f"lambdaserve-{project}-prod"]
        topics = {"/", "/topics", "/topics/predict", "/topics/predict_proba", "/topics/explain"}
        assert paths_of(test_api) == topics | {
            "/iris",
            "/iris/predict",
            "/iris/predict_proba",
            "/iris/explain",
        }
        assert paths_of(prod_api) == topics
        assert results[("iris", "test")].url == (
            f"https://{test_api}.execute-api.{REGION}.amazonaws.com/test/iris/predict"
        )
        # AND each stage has its own key, on its own usage plan, throttled by default
        apigw = boto3.client("apigateway", region_name=REGION)
        plans = {p["name"]: p for p in apigw.get_usage_plans()["items"] if project in p["name"]}
        for stage, api_id in (("test", test_api), ("prod", prod_api)):
            plan = plans[f"lambdaserve-{project}-{stage}"]
            assert plan["apiStages"] == [{"apiId": api_id, "stage": stage}]
            assert plan["throttle"] == {"rateLimit": 10.0, "burstLimit": 10}
            [key] = apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
            assert key["name"] == f"lambdaserve-{project}-{stage}"
        # AND the key's value was shown once per stage: by the deploy that made it
        assert results[("topics", "test")].api_key
        assert results[("iris", "test")].api_key is None
        assert results[("iris", "test")].api_key_id == results[("topics", "test")].api_key_id

        # WHEN iris, test's other model, is destroyed
        destroy(store, project, "iris")
        # THEN test's API keeps topics; and destroying topics takes every stage away
        assert paths_of(apis_of(project)[f"lambdaserve-{project}-test"]) == {
            "/",
            "/topics",
            "/topics/predict",
            "/topics/predict_proba",
            "/topics/explain",
        }
    finally:
        destroy(store, project)
    assert_nothing_left(project)


def build_legacy_layout(project: str, stages: dict[str, list[str]]) -> str:
    """Turn per-stage APIs into the one REST API per project that lambdaserve made before.

    As that version made it: every model's routes in one API, methods integrated with
    ``function:${stageVariables.lambdaAlias}``, a stage per stage with that variable, the
    alias permissions naming that API, and each stage's usage plan attached to it.
    """
    apigw = boto3.client("apigateway", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    legacy = apigw.create_rest_api(
        name=f"lambdaserve-{project}",
        endpointConfiguration={"types": ["REGIONAL"]},
        tags={TAG_PROJECT: project},
    )
    root = apigw.get_resources(restApiId=legacy["id"])["items"][0]["id"]
    for model in sorted({m for models in stages.values() for m in models}):
        parent = apigw.create_resource(restApiId=legacy["id"], parentId=root, pathPart=model)["id"]
        function = f"arn:aws:lambda:{REGION}:{account}:function:{project}-{model}"
        for route in ("predict", "predict_proba"):
            resource = apigw.create_resource(restApiId=legacy["id"], parentId=parent, pathPart=route)["id"]
            apigw.put_method(
                restApiId=legacy["id"], resourceId=resource, httpMethod="POST", authorizationType="NONE",
                apiKeyRequired=True,
            )  # fmt: skip
            apigw.put_integration(
                restApiId=legacy["id"], resourceId=resource, httpMethod="POST", type="AWS_PROXY",
                integrationHttpMethod="POST",
                uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function}:"
                "${stageVariables.lambdaAlias}/invocations",
            )  # fmt: skip
    apis = apis_of(project)
    for stage, models in stages.items():
        apigw.create_deployment(restApiId=legacy["id"], stageName=stage, variables={"lambdaAlias": stage})
        own = apis[f"lambdaserve-{project}-{stage}"]
        [plan] = [
            p for p in apigw.get_usage_plans()["items"] if p["name"] == f"lambdaserve-{project}-{stage}"
        ]
        apigw.update_usage_plan(
            usagePlanId=plan["id"],
            patchOperations=[
                {"op": "add", "path": "/apiStages", "value": f"{legacy['id']}:{stage}"},
                {"op": "remove", "path": "/apiStages", "value": f"{own}:{stage}"},
            ],
        )
        for model in models:
            name = f"{project}-{model}"
            lam.remove_permission(
                FunctionName=name, Qualifier=stage, StatementId=f"lambdaserve-apigateway-{own}"
            )
            lam.add_permission(
                FunctionName=name, Qualifier=stage, StatementId=f"lambdaserve-apigateway-{legacy['id']}",
                Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                SourceArn=f"arn:aws:execute-api:{REGION}:{account}:{legacy['id']}/{stage}/POST/{model}/*",
            )  # fmt: skip
        apigw.delete_rest_api(restApiId=own)
    return str(legacy["id"])


@pytest.mark.skipif(REAL, reason="rebuilds an old layout by hand: run against moto only")
def test_a_project_on_the_one_api_layout_moves_stage_by_stage_with_its_keys(
    aws_account: None,
    store: Store,
    project: str,
    topics_bundle: tuple[dict[str, Any], Path],
    iris_bundle: tuple[dict[str, Any], Path],
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    store.add_version("iris", *iris_bundle)
    apigw = boto3.client("apigateway", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    try:
        # GIVEN a project deployed by an earlier lambdaserve: one REST API, whose test stage
        # served topics and iris and whose prod stage served topics
        for model, stage in (("topics", "test"), ("iris", "test"), ("topics", "prod")):
            run(store, CallLog(), registry, DeployOptions(model, stage, project=project, region=REGION))
        keys = {k["name"]: k["id"] for k in apigw.get_api_keys()["items"] if project in k["name"]}
        legacy = build_legacy_layout(project, {"test": ["topics", "iris"], "prod": ["topics"]})
        assert set(apis_of(project)) == {f"lambdaserve-{project}"}

        # WHEN topics is deployed to test
        moved = run(store, CallLog(), registry, DeployOptions("topics", "test", project=project))
        # THEN test has an API of its own, with every model it served there, and says its URL moved
        apis = apis_of(project)
        test_api = apis[f"lambdaserve-{project}-test"]
        assert paths_of(test_api) >= {"/topics/predict", "/iris/predict", "/iris/predict_proba"}
        assert moved.url == f"https://{test_api}.execute-api.{REGION}.amazonaws.com/test/topics/predict"
        assert any("its URL changes" in note for note in moved.plan.notes)
        # AND the usage plan, with the key callers hold, opens the new API only
        [plan] = [p for p in apigw.get_usage_plans()["items"] if p["name"] == f"lambdaserve-{project}-test"]
        assert plan["apiStages"] == [{"apiId": test_api, "stage": "test"}]
        assert [k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [
            keys[f"lambdaserve-{project}-test"]
        ]
        # AND iris's alias lets the new API in, the old one no more
        policy = json.loads(lam.get_policy(FunctionName=f"{project}-iris", Qualifier="test")["Policy"])
        sids = {s["Sid"] for s in policy["Statement"]}
        assert f"lambdaserve-apigateway-{test_api}" in sids
        assert f"lambdaserve-apigateway-{legacy}" not in sids
        # AND the old API keeps serving prod until prod moves
        assert [s["stageName"] for s in apigw.get_stages(restApiId=legacy)["item"]] == ["prod"]

        # WHEN prod, its last stage, is deployed
        run(store, CallLog(), registry, DeployOptions("topics", "prod", project=project))
        # THEN the old API is gone, and prod's API holds topics alone
        apis = apis_of(project)
        assert set(apis) == {f"lambdaserve-{project}-test", f"lambdaserve-{project}-prod"}
        assert paths_of(apis[f"lambdaserve-{project}-prod"]) == {
            "/",
            "/topics",
            "/topics/predict",
            "/topics/predict_proba",
            "/topics/explain",
        }
        # AND a deploy after that changes nothing
        assert not run(store, CallLog(), registry, DeployOptions("topics", "prod", project=project)).changed
    finally:
        destroy(store, project)
    assert_nothing_left(project)


@pytest.mark.skipif(REAL, reason="an image of the user's own in moto's ECR")
def test_an_image_of_your_own_is_kept_until_you_ask_for_lambdaserve_image(
    aws_account: None, store: Store, project: str, topics_bundle: tuple[dict[str, Any], Path]
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    ecr = boto3.client("ecr", region_name=REGION)
    repository = ecr.create_repository(repositoryName=f"mine-{project}")["repository"]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "e" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName=f"mine-{project}", imageManifest=json.dumps(manifest), imageTag="v1")
    mine = f"{repository['repositoryUri']}:v1"
    lam = boto3.client("lambda", region_name=REGION)
    try:
        # GIVEN a function deployed with an image of the user's own
        run(
            store,
            CallLog(),
            registry,
            DeployOptions("topics", "test", project=project, region=REGION, image_uri=mine),
        )
        # WHEN it is deployed again without --image-uri
        calls = CallLog()
        again = run(store, calls, registry, DeployOptions("topics", "test", project=project))
        # THEN the image is kept, nothing is built or written, and the plan says why
        assert lam.get_function(FunctionName=f"{project}-topics")["Code"]["ImageUri"] == mine
        assert (again.changed, calls.writes(), registry.pushed) == (False, [], [])
        assert any("runs your image" in note and "--build" in note for note in again.plan.notes)
        # WHEN --build asks for lambdaserve's image
        built = run(store, CallLog(), registry, DeployOptions("topics", "test", project=project, build=True))
        # THEN it is built, pushed and served
        assert registry.pushed == [built.desired.image_uri]
        assert (
            lam.get_function(FunctionName=f"{project}-topics")["Code"]["ImageUri"] == built.desired.image_uri
        )
    finally:
        destroy(store, project)
        ecr.delete_repository(repositoryName=f"mine-{project}", force=True)
    assert_nothing_left(project)


@pytest.mark.skipif(REAL, reason="moto only: the main test covers a real deploy")
def test_capture_is_a_stage_variable_set_and_removed_by_a_stage_update(
    aws_account: None, store: Store, project: str, topics_bundle: tuple[dict[str, Any], Path]
) -> None:
    registry = RegistryStandIn()
    store.add_version("topics", *topics_bundle)
    try:
        # GIVEN a deployed stage
        run(store, CallLog(), registry, DeployOptions("topics", "test", project=project, region=REGION))
        apigw = boto3.client("apigateway", region_name=REGION)
        api_id = apis_of(project)[f"lambdaserve-{project}-test"]
        # WHEN deploy --capture 10% runs: THEN the stage has the variable, and the function is untouched
        calls = CallLog()
        run(store, calls, registry, DeployOptions("topics", "test", project=project, capture=0.1))
        assert calls.writes() == ["apigateway:UpdateStage"]
        stage = apigw.get_stage(restApiId=api_id, stageName="test")
        assert stage["variables"] == {"lambdaserveCapture": "0.1"}
        # AND a deploy without --capture keeps it; --capture off removes it
        calls = CallLog()
        run(store, calls, registry, DeployOptions("topics", "test", project=project))
        assert "apigateway:UpdateStage" not in calls.writes()
        run(store, CallLog(), registry, DeployOptions("topics", "test", project=project, capture=0.0))
        assert not apigw.get_stage(restApiId=api_id, stageName="test").get("variables")
    finally:
        destroy(store, project)


@pytest.mark.skipif(REAL, reason="moto only: lines are put by the test")
def test_remote_records_reads_capture_lines_from_cloudwatch_logs(aws_account: None) -> None:
    from datetime import datetime, timedelta, timezone

    from lambdaserve.monitoring.capture import remote_records

    # GIVEN a function's log group with records of two stages among other lines
    logs = boto3.client("logs", region_name=REGION)
    group = f"/aws/lambda/t{uuid.uuid4().hex[:8]}-news"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/12/03/[3]abc")
    now = datetime.now(timezone.utc)
    lines = []
    for n in range(6):
        stage = "prod" if n % 2 else "test"
        stamp = (now - timedelta(minutes=10 - n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record = {"lambdaserveCapture": 1, "time": stamp, "requestId": f"r{n}", "version": "3",
                  "stage": stage, "route": "predict", "instances": [n], "predictions": [n],
                  "probabilities": None, "latencyMs": 1.0}  # fmt: skip
        lines += [
            f"START RequestId: r{n} Version: 3",
            json.dumps({"requestId": f"r{n}"}),
            json.dumps(record) + "\n",
        ]
    base = int((now - timedelta(minutes=10)).timestamp() * 1000)
    events = [{"timestamp": base + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName=group, logStreamName="2026/12/03/[3]abc", logEvents=events)
    try:
        # WHEN the records are read back
        since = now - timedelta(hours=1)
        every = list(remote_records(logs, group, since=since))
        prod = list(remote_records(logs, group, since=since, stage="prod"))
        # THEN only records come back, whole, in order, and a stage filters them
        assert [r["requestId"] for r in every] == [f"r{n}" for n in range(6)]
        assert [r["requestId"] for r in prod] == ["r1", "r3", "r5"]
        assert every[0]["instances"] == [0]
        assert [r["requestId"] for r in remote_records(logs, group, since=since, limit=2)] == ["r0", "r1"]
    finally:
        logs.delete_log_group(logGroupName=group)
