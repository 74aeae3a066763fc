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
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from lambdaserve.deploy.awsclient import AWS
from lambdaserve.deploy.deployer import DeployOptions, DeployResult, deploy
from lambdaserve.deploy.names import TAG_PROJECT
from lambdaserve.deploy.plan import Reporter, execute
from lambdaserve.deploy.remote import promote_options, rollback_options
from lambdaserve.deploy.teardown import find_resources, plan_teardown
from lambdaserve.errors import LambdaserveError
from lambdaserve.store.store import Store

REAL = os.environ.get("LAMBDASERVE_TEST_AWS") == "real"
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

    def __call__(self, region: str | None, profile: str | None) -> AWS:
        aws = AWS(region, profile)
        aws.session.events.register("before-call", self._record)
        return aws

    def _record(self, model: Any, **kwargs: Any) -> None:
        self.operations.append(f"{model.service_model.service_name}:{model.name}")

    def writes(self) -> list[str]:
        return [op for op in self.operations if not op.split(":")[1].startswith(READ_PREFIXES)]


class RegistryStandIn:
    """Pushes an image by registering a manifest for its tag in (moto's) ECR."""

    def __init__(self) -> None:
        self.pushed: list[str] = []
        self.checked: list[str] = []

    def check(self, uris: list[str]) -> None:
        self.checked += uris

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
    def stand_in(aws: AWS, contexts: dict[str, Any], progress: Reporter) -> RegistryStandIn | None:
        return registry

    return deploy(store, options, Progress(), calls, None if REAL or registry is None else stand_in)


def destroy(store: Store, project: str, model: str | None = None) -> None:
    aws = AWS(REGION)
    from lambdaserve.deploy.names import Names

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
        assert REAL or registry.pushed == [first.desired.image_uri]

        # WHEN it is deployed again with nothing changed (and no flags)
        calls.operations.clear()
        again = run(store, calls, registry, DeployOptions(model="topics", stage="test", project=project))
        # THEN no call writes, and the same endpoint and key come back
        assert not again.changed
        assert calls.writes() == []
        assert (again.url, again.api_key) == (first.url, first.api_key)

        # WHEN a new model version is pushed and deployed
        store.add_version("topics", *topics_v2_bundle)
        calls.operations.clear()
        second = run(store, calls, registry, DeployOptions(model="topics", stage="test", project=project))
        # THEN it is uploaded, published as a new Lambda version and the alias flips; no image build
        assert REAL or registry.pushed == [first.desired.image_uri]
        # (checked twice before: by the dry run and by the first deploy; not again)
        assert REAL or registry.checked == [first.desired.image_uri] * 2
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
        apigw = boto3.client("apigateway", region_name=REGION)
        api_id = first.url.split("//")[1].split(".")[0] if first.url else ""
        assert {s["stageName"] for s in apigw.get_stages(restApiId=api_id)["item"]} == {"test", "prod"}

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

        # WHEN keep-warm is turned on for test
        run(store, calls, registry, DeployOptions("topics", "test", project=project, keep_warm=True))
        # THEN a schedule invokes the test alias
        events = boto3.client("events", region_name=REGION)
        rule = events.describe_rule(Name=f"lambdaserve-{project}-topics-test-warm")
        assert rule["ScheduleExpression"] == "rate(5 minutes)"
        [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"].endswith(f":function:{function}:test")
    finally:
        # WHEN the project is destroyed
        destroy(store, project)
    # THEN nothing tagged with the project is left
    assert_nothing_left(project)


def check_resources(result: DeployResult, project: str) -> None:
    names = result.desired.names
    s3 = boto3.client("s3", region_name=REGION)
    bucket = names.bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert len(block) == 4
    assert {"Key": TAG_PROJECT, "Value": project} in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    release = result.desired.release
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
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AWSLambdaBasicExecutionRole"]
    inline = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="read-model-bundles")["PolicyDocument"]
    inline = json.loads(inline) if isinstance(inline, str) else inline
    assert inline["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"arn:aws:s3:::{bucket}/bundles/topics/*",
        }
    ]

    lam = boto3.client("lambda", region_name=REGION)
    function = f"{project}-topics"
    config = lam.get_function(FunctionName=function)
    assert config["Configuration"]["PackageType"] == "Image"
    assert config["Code"]["ImageUri"] == result.desired.image_uri
    assert (config["Configuration"]["MemorySize"], config["Configuration"]["Timeout"]) == (256, 10)
    assert config["Tags"] == {TAG_PROJECT: project, "lambdaserve:model": "topics"}
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
    [api] = [a for a in apigw.get_rest_apis()["items"] if a["name"] == f"lambdaserve-{project}"]
    assert api["tags"][TAG_PROJECT] == project
    resources = {r["path"]: r for r in apigw.get_resources(restApiId=api["id"], embed=["methods"])["items"]}
    assert {"/topics/predict", "/topics/predict_proba"} <= set(resources)
    for path in ("/topics/predict", "/topics/predict_proba"):
        method = apigw.get_method(restApiId=api["id"], resourceId=resources[path]["id"], httpMethod="POST")
        assert method["apiKeyRequired"] is True
        integration = method["methodIntegration"]
        assert integration["type"] == "AWS_PROXY"
        assert integration["uri"].endswith(
            f":function:{function}:${{stageVariables.lambdaAlias}}/invocations"
        )
    stage = apigw.get_stage(restApiId=api["id"], stageName="test")
    assert stage["variables"] == {"lambdaAlias": "test"}
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


def assert_nothing_left(project: str) -> None:
    lam = boto3.client("lambda", region_name=REGION)
    assert [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(f"{project}-")] == []
    iam = boto3.client("iam", region_name=REGION)
    assert [r for r in iam.list_roles()["Roles"] if project in r["RoleName"]] == []
    logs = boto3.client("logs", region_name=REGION)
    assert logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{project}-")["logGroups"] == []
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
        [api] = [a for a in apigw.get_rest_apis()["items"] if a["name"] == f"lambdaserve-{project}"]
        paths = {r["path"] for r in apigw.get_resources(restApiId=api["id"])["items"]}
        assert paths == {"/", "/topics", "/topics/predict", "/topics/predict_proba"}
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
        assert [s.operation for s in again.plan.steps] == ["create_deployment"]  # type: ignore[union-attr]
    finally:
        destroy(store, project)
    assert_nothing_left(project)
