"""The planner is pure: what AWS has + what is wanted -> the calls, checked without AWS."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lambdaserve.deploy.current import (
    APIState,
    BucketState,
    Current,
    FunctionState,
    LegacyAPI,
    RepositoryState,
)
from lambdaserve.deploy.names import Names, check_api_stage, fit
from lambdaserve.deploy.plan import Call, Fmt, PushImage, Ref, Wait, execute, resolve
from lambdaserve.deploy.planner import (
    integration_uri,
    lifecycle_policy,
    log_policy,
    plan_deploy,
    read_policy,
    repository_policy,
    version_description,
)
from lambdaserve.deploy.spec import AwsFunctionSettings, Desired, Release, UsagePlanSettings
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
    uri = integration_uri(NAMES, "news", want.stage)
    method = {"POST": {"apiKeyRequired": True, "methodIntegration": {"type": "AWS_PROXY", "uri": uri}}}
    resources = {
        "/": {"id": "root"},
        "/news": {"id": "r1"},
        "/news/predict": {"id": "r2", "resourceMethods": method},
        "/news/predict_proba": {"id": "r3", "resourceMethods": method},
    }
    snapshot_plan = plan_deploy(want, Current())
    [deployment] = [
        s for s in snapshot_plan.steps if isinstance(s, Call) and s.operation == "create_deployment"
    ]
    return Current(
        bucket=BucketState(tags=NAMES.tags(), versioning=True, encrypted=True, public_access_blocked=True),
        objects={key: "v1"},
        repository=RepositoryState(
            uri=IMAGE.rsplit(":", 1)[0],
            scan_on_push=True,
            policy=repository_policy(NAMES),
            lifecycle=lifecycle_policy(),
        ),
        image_tags={"py3.12-abc"},
        role={"Arn": ROLE},
        role_inline_policies={
            "read-model-bundles": read_policy(NAMES, "news"),
            "write-own-logs": log_policy(NAMES, "news"),
        },
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
            tags=want.function_tags(),
        ),
        api=APIState(
            id="api1",
            root_id="root",
            resources=resources,
            stage={"tags": NAMES.tags(stage=want.stage)},
            stage_deployment=deployment.params["description"],
        ),
        usage_plan={"id": "p1", "apiStages": [{"apiId": "api1", "stage": "test"}]},
        usage_plan_keys={"k1"},
        api_key={"id": "k1"},
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
        function=AwsFunctionSettings(
            memory_mb=1024, reserved_concurrency=5, provisioned_concurrency=2, keep_warm=True
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
    ops = operations(plan_deploy(replace(want, function=AwsFunctionSettings(memory_mb=1024)), before).steps)
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


def calls(plan_steps: list[object], operation: str) -> list[Call]:
    return [s for s in plan_steps if isinstance(s, Call) and s.operation == operation]


def test_each_stage_gets_a_rest_api_of_its_own_routed_to_the_alias_of_its_name() -> None:
    plan = plan_deploy(desired(stage="prod"), Current())
    [api] = calls(plan.steps, "create_rest_api")
    assert api.params["name"] == "lambdaserve-shop-prod"
    assert api.params["tags"] == {"lambdaserve:project": "shop", "lambdaserve:stage": "prod"}
    uris = {s.params["uri"] for s in calls(plan.steps, "put_integration")}
    assert uris == {
        "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/"
        "arn:aws:lambda:eu-west-1:123456789012:function:shop-news:prod/invocations"
    }
    # The stage itself is tagged, and its usage plan and key name the stage
    [tag] = calls(plan.steps, "tag_resource")
    assert tag.params["tags"] == {"lambdaserve:project": "shop", "lambdaserve:stage": "prod"}
    assert str(tag.params["resourceArn"]) == "arn:aws:apigateway:eu-west-1::/restapis/<api.id>/stages/prod"
    [usage_plan] = calls(plan.steps, "create_usage_plan")
    assert usage_plan.params["tags"]["lambdaserve:stage"] == "prod"


def test_a_stage_of_the_old_one_api_layout_moves_with_every_model_it_served() -> None:
    # GIVEN the project's one REST API of earlier versions, whose stages test and prod
    # served news and iris; test's usage plan and key are attached to it
    current = deployed(desired())
    current.api = None
    current.legacy_api = LegacyAPI(
        id="old1",
        stages=["prod", "test"],
        members={"iris": ("predict",), "news": ("predict", "predict_proba")},
        member_policies={"iris": {"lambdaserve-apigateway-old1"}, "news": {"lambdaserve-apigateway-old1"}},
    )
    assert current.function is not None
    current.function.alias_policy = {"lambdaserve-apigateway-old1"}
    current.usage_plan = {"id": "p1", "apiStages": [{"apiId": "old1", "stage": "test"}]}
    # WHEN news is deployed to test
    plan = plan_deploy(desired(), current)
    ops = operations(plan.steps)
    # THEN test's own API holds both models' routes, each alias lets it invoke
    paths = {str(s.params["pathPart"]) for s in calls(plan.steps, "create_resource")}
    assert paths == {"news", "iris", "predict", "predict_proba"}
    permitted = [s.params["FunctionName"] for s in calls(plan.steps, "add_permission")]
    assert permitted == ["shop-iris", "shop-news"]
    # AND the plan (so the key callers hold) moves to it before the old stage goes
    [update] = calls(plan.steps, "update_usage_plan")
    patch = update.params["patchOperations"]
    assert patch[0]["op"] == "add"
    assert str(patch[0]["value"]) == "<api.id>:test"
    assert patch[1] == {"op": "remove", "path": "/apiStages", "value": "old1:test"}
    assert ops.index("apigateway:create_deployment") < ops.index("apigateway:update_usage_plan")
    assert ops.index("apigateway:update_usage_plan") < ops.index("apigateway:delete_stage")
    assert [s.params["FunctionName"] for s in calls(plan.steps, "remove_permission")] == [
        "shop-iris",
        "shop-news",
    ]
    [removed] = calls(plan.steps, "delete_stage")
    assert removed.params == {"restApiId": "old1", "stageName": "test"}
    # AND the old API stays for prod, which moves on its own next deploy
    assert calls(plan.steps, "delete_rest_api") == []
    assert any("its URL changes" in note for note in plan.notes)
    # WHEN prod, the old API's last stage, moves too
    current.legacy_api.stages = ["prod"]
    current.usage_plan = {"id": "p2", "apiStages": [{"apiId": "old1", "stage": "prod"}]}
    last = plan_deploy(desired(stage="prod"), current)
    # THEN the old API goes
    assert [s.params for s in calls(last.steps, "delete_rest_api")] == [{"restApiId": "old1"}]


def test_the_role_writes_its_own_logs_only_and_the_broad_managed_policy_is_detached() -> None:
    current = deployed(desired())
    current.role_managed_policies = {"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    del current.role_inline_policies["write-own-logs"]
    plan = plan_deploy(desired(), current)
    [put] = calls(plan.steps, "put_role_policy")
    assert put.params["PolicyName"] == "write-own-logs"
    statement = json.loads(put.params["PolicyDocument"])["Statement"][0]
    assert statement["Resource"] == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/shop-news:*",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/shop-news:log-stream:*",
    ]
    assert [s.params["PolicyArn"] for s in calls(plan.steps, "detach_role_policy")] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]


def test_a_new_repository_lets_only_the_project_functions_pull_and_expires_untagged_images() -> None:
    plan = plan_deploy(desired(), Current())
    [policy] = calls(plan.steps, "set_repository_policy")
    statement = json.loads(policy.params["policyText"])["Statement"][0]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"]["StringLike"]["aws:sourceArn"].endswith(":function:shop-*")
    [lifecycle] = calls(plan.steps, "put_lifecycle_policy")
    rule = json.loads(lifecycle.params["lifecyclePolicyText"])["rules"][0]
    assert rule["selection"]["tagStatus"] == "untagged"
    assert rule["action"] == {"type": "expire"}


def test_access_logs_make_a_log_group_and_set_the_account_role_only_where_none_is_set() -> None:
    current = deployed(desired())
    plan = plan_deploy(desired(access_logs=True), current)
    ops = operations(plan.steps)
    assert ops == [
        "logs:create_log_group",
        "logs:put_retention_policy",
        "iam:create_role",
        "iam:attach_role_policy",
        "Wait",
        "apigateway:update_account",
        "apigateway:update_stage",
    ]
    [stage] = calls(plan.steps, "update_stage")
    destination = stage.params["patchOperations"][0]["value"]
    assert (
        destination == "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/apigateway/lambdaserve-shop/test"
    )
    # An account whose API Gateway has a CloudWatch role already keeps it
    current.cloudwatch_role_arn = "arn:aws:iam::123456789012:role/theirs"
    assert "apigateway:update_account" not in operations(
        plan_deploy(desired(access_logs=True), current).steps
    )


def test_a_new_base_or_architecture_tags_the_function_and_points_it_at_the_new_image() -> None:
    current = deployed(desired())
    want = desired(
        function=AwsFunctionSettings(architecture="arm64"),
        build_tags={"lambdaserve:base": "public.ecr.aws/lambda/python:3.12@sha256:" + "b" * 64},
    )
    plan = plan_deploy(want, current)
    [code] = calls(plan.steps, "update_function_code")
    assert code.params["Architectures"] == ["arm64"]
    [tag] = calls(plan.steps, "tag_resource")
    assert tag.params["Tags"]["lambdaserve:base"].endswith("b" * 64)


def test_explain_adds_its_route_and_a_reference_travels_to_s3_beside_the_model(tmp_path: Path) -> None:
    # GIVEN a tabular release with reference statistics, deployed with /explain
    reference = tmp_path / "reference-0123456789abcdef.json"
    reference.write_text("{}")
    want = desired(release=replace(release(), reference_file=reference), explain=True)
    plan = plan_deploy(want, Current())
    # THEN the stage's API has the route, beside predict and predict_proba
    parts = [
        s.params.get("pathPart")
        for s in plan.steps
        if isinstance(s, Call) and s.operation == "create_resource"
    ]
    assert {"predict", "predict_proba", "explain"} <= set(parts)
    # AND the statistics are uploaded once, and reach the function pinned to their S3 version
    uploads = [s.params["Key"] for s in plan.steps if isinstance(s, Call) and s.operation == "put_object"]
    assert uploads == [
        NAMES.bundle_key("news", "a" * 64, ".pickle"),
        f"{NAMES.bundle_prefix('news')}{reference.name}",
    ]
    function = next(s for s in plan.steps if isinstance(s, Call) and s.operation == "create_function")
    location = function.params["Environment"]["Variables"]["LAMBDASERVE_REFERENCE"]
    outputs = {"upload-1": {"VersionId": "m"}, "upload-reference-1": {"VersionId": "r"}}
    assert resolve(location, outputs) == f"s3://{NAMES.bucket}/{uploads[1]}?versionId=r"
    # AND without --explain there is no such route
    plain = plan_deploy(desired(), Current())
    assert "explain" not in [s.params.get("pathPart") for s in plain.steps if isinstance(s, Call)]


def test_capture_sets_the_stage_variable_and_off_removes_it_without_touching_the_function() -> None:
    # GIVEN a converged stage without capture
    current = deployed(desired())
    # WHEN 10% is asked for: one stage update, nothing else
    plan = plan_deploy(desired(capture=0.1), current)
    [update] = calls(plan.steps, "update_stage")
    assert operations(plan.steps) == ["apigateway:update_stage"]
    assert update.params == {
        "restApiId": "api1",
        "stageName": "test",
        "patchOperations": [{"op": "replace", "path": "/variables/lambdaserveCapture", "value": "0.1"}],
    }
    # THEN once AWS has it, the same rate plans nothing, and leaving --capture out keeps it
    assert current.api is not None
    current.api.stage = {**(current.api.stage or {}), "variables": {"lambdaserveCapture": "0.1"}}
    assert plan_deploy(desired(capture=0.1), current).steps == []
    assert plan_deploy(desired(), current).steps == []
    # AND off removes the variable
    [removal] = calls(plan_deploy(desired(capture=0.0), current).steps, "update_stage")
    assert removal.params["patchOperations"] == [{"op": "remove", "path": "/variables/lambdaserveCapture"}]


def test_a_new_stage_gets_its_capture_variable_after_the_deployment_that_creates_it() -> None:
    steps = plan_deploy(desired(capture=1.0), Current()).steps
    [deployment] = calls(steps, "create_deployment")
    [update] = [s for s in calls(steps, "update_stage") if "/variables/" in str(s.params)]
    assert steps.index(deployment) < steps.index(update)
    assert update.params["patchOperations"][0]["value"] == "1"
