"""The planner is pure: what AWS has + what is wanted -> the calls, checked without AWS."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lambdaserve.deploy.current import APIState, BucketState, Current, FunctionState
from lambdaserve.deploy.names import Names, check_api_stage, fit
from lambdaserve.deploy.plan import Call, Fmt, PushImage, Ref, Wait, execute, resolve
from lambdaserve.deploy.planner import integration_uri, plan_deploy, version_description
from lambdaserve.deploy.spec import Desired, FunctionSettings, Release, UsagePlanSettings
from lambdaserve.errors import LambdaserveError

NAMES = Names("shop", "123456789012", "eu-west-1")
IMAGE = NAMES.image_uri("py3.12-abc")
ROLE = "arn:aws:iam::123456789012:role/lambdaserve-shop-news"


def release(version: int = 1, sha: str = "a" * 64) -> Release:
    return Release(
        model="news", version=version, sha256=sha, format="pickle", file=Path("/m.pickle"), suffix=".pickle",
        python="3.12", requirements=("scikit-learn==1.8.0",), has_proba=True, image_uri=IMAGE,
    )  # fmt: skip


def desired(**changes: object) -> Desired:
    return replace(Desired(names=NAMES, stage="test", release=release()), **changes)  # type: ignore[arg-type]


def operations(steps: list[object]) -> list[str]:
    return [f"{s.service}:{s.operation}" if isinstance(s, Call) else type(s).__name__ for s in steps]  # type: ignore[attr-defined]


def deployed(want: Desired) -> Current:
    """What AWS has after ``want`` was deployed: the planner must then plan nothing."""
    key = NAMES.bundle_key("news", want.release.sha256, ".pickle")
    environment = {
        **want.release.environment(),
        "LAMBDASERVE_MODEL": f"s3://{NAMES.bucket}/{key}?versionId=v1",
    }
    uri = integration_uri(NAMES, "news")
    method = {"POST": {"apiKeyRequired": True, "methodIntegration": {"type": "AWS_PROXY", "uri": uri}}}
    resources = {
        "/": {"id": "root"},
        "/news": {"id": "r1"},
        "/news/predict": {"id": "r2", "resourceMethods": method},
        "/news/predict_proba": {"id": "r3", "resourceMethods": method},
    }
    from lambdaserve.deploy.planner import read_policy

    snapshot_plan = plan_deploy(want, Current())
    [deployment] = [
        s for s in snapshot_plan.steps if isinstance(s, Call) and s.operation == "create_deployment"
    ]
    return Current(
        bucket=BucketState(tags=NAMES.tags(), versioning=True, encrypted=True, public_access_blocked=True),
        objects={key: "v1"},
        repository={
            "repositoryUri": IMAGE.rsplit(":", 1)[0],
            "imageScanningConfiguration": {"scanOnPush": True},
        },
        image_tags={"py3.12-abc"},
        role={"Arn": ROLE},
        role_managed_policies={"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"},
        role_inline_policy=read_policy(NAMES, "news"),
        log_group={"retentionInDays": want.function.log_retention_days},
        function=FunctionState(
            image_uri=IMAGE,
            role=ROLE,
            memory_mb=want.function.memory_mb,
            timeout_s=want.function.timeout_s,
            environment=environment,
            versions={version_description(want, want.release, ROLE): "1"},
            reserved_concurrency=want.function.reserved_concurrency,
            alias={"FunctionVersion": "1"},
            alias_policy={"lambdaserve-apigateway-api1"},
            provisioned_concurrency=want.function.provisioned_concurrency,
        ),
        api=APIState(
            id="api1",
            root_id="root",
            resources=resources,
            stage={"variables": {"lambdaAlias": "test"}},
            stage_deployment=deployment.params["description"],
        ),
        usage_plan={"id": "p1", "apiStages": [{"apiId": "api1", "stage": "test"}]},
        usage_plan_keys={"k1"},
        api_key={"id": "k1", "value": "secret"},
    )


def test_a_first_deploy_creates_everything_in_an_order_aws_accepts() -> None:
    plan = plan_deploy(desired(), Current())
    ops = operations(plan.steps)
    # The bucket before the upload, the image before the function, the role before the function,
    # the function before its alias, the API's stage before the usage plan that names it.
    for first, then in [
        ("s3:create_bucket", "s3:put_object"),
        ("PushImage", "lambda:create_function"),
        ("iam:create_role", "lambda:create_function"),
        ("lambda:publish_version", "lambda:create_alias"),
        ("apigateway:create_deployment", "apigateway:create_usage_plan"),
        ("apigateway:create_api_key", "apigateway:create_usage_plan_key"),
    ]:
        assert ops.index(first) < ops.index(then), (first, then)
    after_create = plan.steps[ops.index("lambda:create_function") + 1]
    assert isinstance(after_create, Wait)
    assert after_create.waiter == "function_active_v2"
    create = next(s for s in plan.steps if isinstance(s, Call) and s.operation == "create_bucket")
    assert create.params["CreateBucketConfiguration"] == {"LocationConstraint": "eu-west-1"}
    # The uploaded object's version reaches the function through a reference
    function = next(s for s in plan.steps if isinstance(s, Call) and s.operation == "create_function")
    model = function.params["Environment"]["Variables"]["LAMBDASERVE_MODEL"]
    assert isinstance(model, Fmt)
    assert resolve(model, {"upload-1": {"VersionId": "xyz"}}).endswith(".pickle?versionId=xyz")


def test_nothing_is_planned_when_aws_already_has_what_is_wanted() -> None:
    want = desired(plan=UsagePlanSettings())
    plan = plan_deploy(want, deployed(want))
    assert plan.steps == []
    assert not plan.writes


def test_a_new_model_version_is_an_upload_a_published_version_and_an_alias_flip() -> None:
    current = deployed(desired())
    plan = plan_deploy(desired(release=release(2, "b" * 64)), current)
    assert operations(plan.steps) == [
        "s3:put_object",
        "lambda:update_function_configuration",
        "Wait",
        "lambda:publish_version",
        "lambda:update_alias",
    ]


def test_a_canary_weighs_the_new_version_beside_the_old_one() -> None:
    current = deployed(desired())
    plan = plan_deploy(desired(canary=release(2, "b" * 64), canary_weight=10.0), current)
    [alias] = [s for s in plan.steps if isinstance(s, Call) and s.operation == "update_alias"]
    assert alias.params["FunctionVersion"] == "1"
    assert alias.params["RoutingConfig"] == {
        "AdditionalVersionWeights": {Ref("publish-2", ("Version",)): 0.1}
    }


def test_a_canary_of_a_version_never_published_names_it_once_published() -> None:
    # GIVEN a stage serving version 1, and version 2 that Lambda has never published
    current = deployed(desired())
    plan = plan_deploy(desired(canary=release(2, "b" * 64), canary_weight=10.0), current)

    # WHEN the plan runs: publishing answers with Lambda's next version number
    class Lambda:
        def __init__(self) -> None:
            self.aliases: list[dict[str, object]] = []

        def call(self, service: str, operation: str, **params: object) -> dict[str, object]:
            if operation == "update_alias":
                self.aliases.append(params)
            return {"Version": "7", "VersionId": "v2"}

        def wait(self, service: str, waiter: str, **params: object) -> None: ...

    class Quiet:
        def step(self, message: str) -> None: ...

        def detail(self, line: str) -> None: ...

    aws = Lambda()
    execute(plan, aws, Quiet())
    # THEN the alias weighs the newly published version by its number, a key AWS accepts
    assert aws.aliases == [
        {
            "FunctionName": "shop-news",
            "Name": "test",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"7": 0.1}},
        }
    ]


def test_settings_changes_are_planned_and_removed_settings_are_undone() -> None:
    want = desired(
        function=FunctionSettings(
            memory_mb=512, reserved_concurrency=5, provisioned_concurrency=2, keep_warm=True
        ),
        plan=UsagePlanSettings(rate=10, burst=10, quota_limit=100, quota_period="DAY"),
    )
    ops = operations(plan_deploy(want, deployed(desired())).steps)
    for op in [
        "lambda:update_function_configuration",
        "lambda:publish_version",
        "lambda:put_function_concurrency",
        "lambda:put_provisioned_concurrency_config",
        "events:put_rule",
        "events:put_targets",
        "lambda:add_permission",
        "apigateway:update_usage_plan",
    ]:
        assert op in ops
    # Back to no keep-warm, no reserved or provisioned concurrency
    before = deployed(want)
    before.keep_warm_rule = {"ScheduleExpression": "rate(5 minutes)"}
    before.keep_warm_targets = [{"Id": "alias", "Arn": "arn"}]
    assert before.function is not None
    before.function.alias_policy.add("lambdaserve-keep-warm")
    ops = operations(plan_deploy(replace(want, function=FunctionSettings(memory_mb=512)), before).steps)
    assert ops == [
        "lambda:delete_function_concurrency",
        "lambda:delete_provisioned_concurrency_config",
        "events:remove_targets",
        "events:delete_rule",
        "lambda:remove_permission",
        "apigateway:update_usage_plan",
    ]


def test_us_east_1_buckets_are_created_without_a_location_constraint() -> None:
    names = Names("shop", "123456789012", "us-east-1")
    plan = plan_deploy(
        desired(names=names, release=replace(release(), image_uri=names.image_uri("t"))), Current()
    )
    create = next(s for s in plan.steps if isinstance(s, Call) and s.operation == "create_bucket")
    assert create.params == {"Bucket": names.bucket}


def test_long_names_are_shortened_without_colliding() -> None:
    long_a, long_b = "m" * 70 + "a", "m" * 70 + "b"
    assert len(fit(long_a, 64)) == 64
    assert fit(long_a, 64) != fit(long_b, 64)
    assert fit("short", 64) == "short"
    with pytest.raises(LambdaserveError, match="letters, digits and '_'"):
        check_api_stage("my-stage")


def test_the_executor_feeds_earlier_answers_into_later_calls() -> None:
    class FakeAWS:
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, object]]] = []

        def call(self, service: str, operation: str, **params: object) -> dict[str, object]:
            self.calls.append((operation, params))
            return {"id": "api-9", "ResponseMetadata": {}} if operation == "create_rest_api" else {}

        def wait(self, service: str, waiter: str, **params: object) -> None:
            self.calls.append((waiter, params))

    class Quiet:
        def step(self, message: str) -> None: ...

        def detail(self, line: str) -> None: ...

    from lambdaserve.deploy.plan import Plan, fmt

    plan = Plan(
        [
            Call("apigateway", "create_rest_api", {"name": "x"}, "api", "api"),
            Call(
                "lambda", "add_permission", {"SourceArn": fmt("arn:{api}/*", api=Ref("api", ("id",)))}, "perm"
            ),
            Wait("lambda", "function_updated_v2", {"FunctionName": "f"}, "wait"),
            PushImage("uri", "push", "image"),
        ]
    )
    fake = FakeAWS()
    outputs = execute(plan, fake, Quiet(), lambda uri: {"pushed": uri})
    assert fake.calls[1] == ("add_permission", {"SourceArn": "arn:api-9/*"})
    assert outputs == {"api": {"id": "api-9"}, "image": {"pushed": "uri"}}
    assert json.dumps(plan.describe())  # a plan prints
