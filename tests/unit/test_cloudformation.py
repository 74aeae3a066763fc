"""The CloudFormation export: each resource and setting of the deploy contract, and cfn-lint.

Templates are built from desired states made here (no store, no AWS); cfn-lint, the
linter AWS maintains, checks them against CloudFormation's resource schemas in one run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdaserve.deploy.cloudformation import build_template, releases_needing_history
from lambdaserve.deploy.cloudformation_syntax import (
    ACCOUNT_PLACEHOLDER,
    bucket_name,
    dump_template,
    logical_part,
)
from lambdaserve.deploy.names import Names
from lambdaserve.deploy.planner import lifecycle_policy
from lambdaserve.deploy.spec import AwsFunctionSettings, Desired, Release, UsagePlanSettings
from lambdaserve.errors import LambdaserveError

NAMES = Names("demo", ACCOUNT_PLACEHOLDER, "eu-west-1")
PINS = ("numpy==2.4.6", "scikit-learn==1.9.1")
PROJECT_TAGS = [{"Key": "lambdaserve:project", "Value": "demo"}]
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
TAG = "py3.11-x86_64-0123456789abcdef"
LOG_GROUP_ARN = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"


def release(model: str = "iris", version: int = 1, proba: bool = False, **changes: Any) -> Release:
    sha = f"{model}{version}".encode().hex().ljust(64, "0")
    fields: dict[str, Any] = {
        "model": model,
        "version": version,
        "sha256": sha,
        "format": "pickle",
        "file": Path(f"/state/models/{sha}.pickle"),
        "suffix": ".pickle",
        "python": "3.11",
        "requirements": PINS,
        "has_proba": proba,
        "image_uri": NAMES.image_uri(TAG),
    }
    return Release(**{**fields, **changes})


def stage(
    name: str,
    served: Release,
    canary: Release | None = None,
    weight: float = 0.0,
    names: Names = NAMES,
    **kw: Any,
) -> Desired:
    return Desired(names, name, served, canary=canary, canary_weight=weight, **kw)


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return props


def model_tags(model: str) -> list[dict[str, str]]:
    return [*PROJECT_TAGS, {"Key": "lambdaserve:model", "Value": model}]


# -- storage -----------------------------------------------------------------------------
def test_the_bucket_is_versioned_encrypted_private_and_outlives_the_stack() -> None:
    template = build_template([stage("test", release())])
    assert template["Resources"]["ModelBucket"] == {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": {"Fn::Sub": "lambdaserve-demo-${AWS::AccountId}-eu-west-1"},
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "Tags": PROJECT_TAGS,
        },
    }


def test_the_repository_scans_images_on_push_and_never_moves_a_tag() -> None:
    template = build_template([stage("test", release())])
    assert template["Resources"]["ImageRepository"] == {
        "Type": "AWS::ECR::Repository",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "RepositoryName": "lambdaserve-demo",
            "ImageScanningConfiguration": {"ScanOnPush": True},
            "ImageTagMutability": "IMMUTABLE",
            "RepositoryPolicyText": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "LambdaECRImageRetrievalPolicy",
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                        "Condition": {
                            "StringLike": {
                                "aws:sourceArn": {
                                    "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:"
                                    "${AWS::AccountId}:function:demo-*"
                                }
                            }
                        },
                    }
                ],
            },
            "LifecyclePolicy": {"LifecyclePolicyText": json.dumps(lifecycle_policy(), sort_keys=True)},
            "Tags": PROJECT_TAGS,
        },
    }


def test_a_first_deploy_with_storage_only_creates_the_bucket_and_repository_alone() -> None:
    template = build_template([stage("test", release()), stage("prod", release("news", 3))])
    assert template["Parameters"]["StorageOnly"]["AllowedValues"] == ["false", "true"]
    assert template["Conditions"]["Serving"] == {"Fn::Equals": [{"Ref": "StorageOnly"}, "false"]}
    unconditional = {name for name, r in template["Resources"].items() if "Condition" not in r}
    assert unconditional == {"ModelBucket", "ImageRepository"}
    assert {r["Condition"] for r in template["Resources"].values() if "Condition" in r} == {"Serving"}
    # ... and the second deploy refuses to run without the uploaded objects' versions.
    rule = template["Rules"]["ModelObjectVersionsGiven"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "StorageOnly"}, "false"]}
    assert [a["Assert"] for a in rule["Assertions"]] == [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": f"{model}ModelObjectVersion"}, ""]}]}
        for model in ("Iris", "News")
    ]


def test_the_bucket_name_is_the_deployers_with_the_account_left_to_cloudformation() -> None:
    assert bucket_name(NAMES) == "lambdaserve-demo-${AWS::AccountId}-eu-west-1"
    assert (
        bucket_name(Names("demo", "123456789012", "eu-west-1")) == "lambdaserve-demo-123456789012-eu-west-1"
    )
    long_project = Names("a-rather-long-project-name-for-a-bucket", ACCOUNT_PLACEHOLDER, "ap-southeast-2")
    with pytest.raises(LambdaserveError, match="--account"):
        bucket_name(long_project)
    known = Names(long_project.project, "123456789012", "ap-southeast-2")
    assert bucket_name(known) == known.bucket  # shortened with a hash, as lambdaserve deploy does


# -- per model ---------------------------------------------------------------------------
def test_the_role_trusts_lambda_and_reads_exactly_the_models_bundles() -> None:
    role = properties(build_template([stage("test", release())]), "IrisRole")
    assert role == {
        "RoleName": "lambdaserve-demo-iris",
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        },
        "Policies": [
            {
                "PolicyName": "read-model-bundles",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                            "Resource": {
                                "Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/bundles/iris/*"
                            },
                        }
                    ],
                },
            },
            {
                # Its own log group only: not AWSLambdaBasicExecutionRole's logs on every group.
                "PolicyName": "write-own-logs",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                            "Resource": [
                                {"Fn::Sub": f"{LOG_GROUP_ARN}/aws/lambda/demo-iris:*"},
                                {"Fn::Sub": f"{LOG_GROUP_ARN}/aws/lambda/demo-iris:log-stream:*"},
                            ],
                        }
                    ],
                },
            },
        ],
        "Tags": model_tags("iris"),
    }


def test_the_log_group_is_the_functions_with_the_retention_asked() -> None:
    settings = AwsFunctionSettings(log_retention_days=14)
    template = build_template([stage("test", release(), function=settings)])
    assert properties(template, "IrisLogGroup") == {
        "LogGroupName": "/aws/lambda/demo-iris",
        "RetentionInDays": 14,
        "Tags": model_tags("iris"),
    }
    assert template["Resources"]["IrisFunction"]["DependsOn"] == ["IrisLogGroup"]


def test_the_function_runs_the_image_with_the_settings_and_the_model_from_s3() -> None:
    served = release(trusted_types=("mypkg.Tokenizer",))
    settings = AwsFunctionSettings(memory_mb=1024, timeout_s=20, reserved_concurrency=5, architecture="arm64")
    template = build_template([stage("test", served, function=settings)])
    tag = TAG
    assert properties(template, "IrisFunction") == {
        "FunctionName": "demo-iris",
        "Description": "lambdaserve demo/iris",
        "PackageType": "Image",
        "Code": {
            "ImageUri": {
                "Fn::If": [
                    "IrisImageFromStack",
                    {"Fn::Sub": f"${{ImageRepository.RepositoryUri}}:{tag}"},
                    {"Ref": "IrisImageUri"},
                ]
            }
        },
        "Architectures": ["arm64"],
        "Role": {"Fn::GetAtt": ["IrisRole", "Arn"]},
        "MemorySize": 1024,
        "Timeout": 20,
        "Environment": {
            "Variables": {
                "LAMBDASERVE_MODEL": {
                    "Fn::Sub": "s3://${ModelBucket}/${IrisModelKey}?versionId=${IrisModelObjectVersion}"
                },
                "LAMBDASERVE_MODEL_FORMAT": "pickle",
                "LAMBDASERVE_MODEL_SHA256": served.sha256,
                "LAMBDASERVE_MODEL_VERSION": "1",
                "LAMBDASERVE_TRUSTED_TYPES": "mypkg.Tokenizer",
            }
        },
        "ReservedConcurrentExecutions": 5,
        "Tags": model_tags("iris"),
    }
    assert "ReservedConcurrentExecutions" not in properties(
        build_template([stage("test", served)]), "IrisFunction"
    )


def test_a_pipeline_sets_the_image_and_the_model_object_through_parameters() -> None:
    served = release()
    parameters = build_template([stage("test", served)])["Parameters"]
    assert parameters["IrisImageUri"]["Default"] == ""  # empty: the stack's repository, lambdaserve's tag
    assert TAG in parameters["IrisImageUri"]["Description"]
    assert "lambdaserve export image iris" in parameters["IrisImageUri"]["Description"]
    # An image of the user's own is the parameter's default
    mine = build_template([stage("test", release(image_uri="123.dkr.ecr.eu-west-1.amazonaws.com/mine:v1"))])
    assert mine["Parameters"]["IrisImageUri"]["Default"] == "123.dkr.ecr.eu-west-1.amazonaws.com/mine:v1"
    assert parameters["IrisModelKey"]["Default"] == f"bundles/iris/{served.sha256}.pickle"
    assert parameters["IrisModelObjectVersion"]["Default"] == ""
    assert {p["Type"] for p in parameters.values()} == {"String"}


def test_each_stage_is_an_alias_of_a_published_version() -> None:
    template = build_template([stage("test", release(version=2)), stage("prod", release(version=1))])
    versions = resources(template, "AWS::Lambda::Version")
    assert {name: r["Properties"] for name, r in versions.items()} == {
        f"IrisVersion{n}": {
            "FunctionName": {"Ref": "IrisFunction"},
            "Description": release(version=n).description(),
        }
        for n in (1, 2)
    }
    assert {name: r["Properties"] for name, r in resources(template, "AWS::Lambda::Alias").items()} == {
        "IrisProdAlias": {
            "Name": "prod",
            "FunctionName": {"Ref": "IrisFunction"},
            "FunctionVersion": {"Fn::GetAtt": ["IrisVersion1", "Version"]},
            "Description": "lambdaserve stage prod",
        },
        "IrisTestAlias": {
            "Name": "test",
            "FunctionName": {"Ref": "IrisFunction"},
            "FunctionVersion": {"Fn::GetAtt": ["IrisVersion2", "Version"]},
            "Description": "lambdaserve stage test",
        },
    }


@pytest.mark.parametrize(("percent", "fraction"), [(10.0, 0.1), (12.5, 0.125), (33.3, 0.333)])
def test_a_canary_is_a_weight_on_the_alias(percent: float, fraction: float) -> None:
    template = build_template([stage("prod", release(version=1), canary=release(version=2), weight=percent)])
    assert properties(template, "IrisProdAlias")["RoutingConfig"] == {
        "AdditionalVersionWeights": [
            {"FunctionVersion": {"Fn::GetAtt": ["IrisVersion2", "Version"]}, "FunctionWeight": fraction}
        ]
    }


def test_the_function_carries_the_release_brought_in_last() -> None:
    # GIVEN prod serves version 2 and test was then rolled back to version 1
    stages = [stage("prod", release(version=2)), stage("test", release(version=1))]

    def served_by_function(template: dict[str, Any]) -> str:
        variables = properties(template, "IrisFunction")["Environment"]["Variables"]
        return str(variables["LAMBDASERVE_MODEL_VERSION"])

    # THEN by default the function carries the highest version, and the one asked for when told
    assert served_by_function(build_template(stages)) == "2"
    assert served_by_function(build_template(stages, configured={"iris": 1})) == "1"
    # ... which is what a stack update can publish; the other version must be in the stack already.
    assert releases_needing_history(stages) == {"iris": [1, 2]}
    assert releases_needing_history([stage("prod", release()), stage("test", release())]) == {}


def test_provisioned_concurrency_is_on_the_alias_and_refused_with_a_canary() -> None:
    settings = AwsFunctionSettings(provisioned_concurrency=3)
    template = build_template([stage("test", release(), function=settings)])
    assert properties(template, "IrisTestAlias")["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": 3
    }
    with_canary = stage("prod", release(version=1), canary=release(version=2), weight=10, function=settings)
    with pytest.raises(LambdaserveError, match="canary") as caught:
        build_template([with_canary])
    assert caught.value.hint is not None
    assert "lambdaserve promote iris 2 --stage prod" in caught.value.hint


def test_keep_warm_invokes_the_alias_every_five_minutes() -> None:
    template = build_template([stage("prod", release(), function=AwsFunctionSettings(keep_warm=True))])
    assert properties(template, "IrisProdKeepWarmRule") == {
        "Name": "lambdaserve-demo-iris-prod-warm",
        "Description": "Keeps an environment of iris in stage prod warm",
        "ScheduleExpression": "rate(5 minutes)",
        "State": "ENABLED",
        "Targets": [{"Id": "warm", "Arn": {"Ref": "IrisProdAlias"}, "Input": '{"lambdaserve": "warm"}'}],
        "Tags": model_tags("iris"),
    }
    assert properties(template, "IrisProdKeepWarmPermission") == {
        "FunctionName": {"Ref": "IrisProdAlias"},
        "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com",
        "SourceArn": {"Fn::GetAtt": ["IrisProdKeepWarmRule", "Arn"]},
    }
    assert not resources(build_template([stage("prod", release())]), "AWS::Events::Rule")


# -- one REST API per stage ------------------------------------------------------------
def test_each_stage_has_a_regional_rest_api_with_only_the_routes_of_its_models() -> None:
    template = build_template(
        [
            stage("test", release("iris", proba=True)),
            stage("test", release("news")),
            stage("prod", release("news")),
        ]
    )
    apis = resources(template, "AWS::ApiGateway::RestApi")
    assert {name: r["Properties"]["Name"] for name, r in apis.items()} == {
        "ProdApi": "lambdaserve-demo-prod",
        "TestApi": "lambdaserve-demo-test",
    }
    assert properties(template, "TestApi")["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    paths = {
        name: r["Properties"]["PathPart"]
        for name, r in resources(template, "AWS::ApiGateway::Resource").items()
    }
    assert paths == {
        "TestIrisResource": "iris",
        "TestIrisPredictResource": "predict",
        "TestIrisPredictProbaResource": "predict_proba",
        "TestNewsResource": "news",
        "TestNewsPredictResource": "predict",
        "ProdNewsResource": "news",  # iris is not deployed to prod: prod's API has no /iris
        "ProdNewsPredictResource": "predict",
    }
    assert set(resources(template, "AWS::ApiGateway::Method")) == {
        "TestIrisPredictMethod",
        "TestIrisPredictProbaMethod",
        "TestNewsPredictMethod",
        "ProdNewsPredictMethod",
    }


def test_a_method_needs_an_api_key_and_proxies_to_the_alias_of_its_stage() -> None:
    template = build_template([stage("test", release())])
    assert properties(template, "TestIrisPredictMethod") == {
        "RestApiId": {"Ref": "TestApi"},
        "ResourceId": {"Ref": "TestIrisPredictResource"},
        "HttpMethod": "POST",
        "AuthorizationType": "NONE",
        "ApiKeyRequired": True,
        "Integration": {
            "Type": "AWS_PROXY",
            "IntegrationHttpMethod": "POST",
            # lambdaserve deploy's integration: the model's alias of the stage's name (Ref: its ARN).
            "Uri": {
                "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                "${IrisTestAlias}/invocations"
            },
        },
    }
    assert properties(template, "IrisTestApiPermission") == {
        "FunctionName": {"Ref": "IrisTestAlias"},
        "Action": "lambda:InvokeFunction",
        "Principal": "apigateway.amazonaws.com",
        "SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${TestApi}"
            "/test/POST/iris/*"
        },
    }


def test_each_stage_has_a_deployment_an_api_key_and_a_usage_plan_with_its_limits() -> None:
    plan = UsagePlanSettings(rate=10, burst=10, quota_limit=100, quota_period="DAY")
    template = build_template([stage("test", release(), plan=plan), stage("prod", release(), plan=plan)])
    for name, part in (("test", "Test"), ("prod", "Prod")):
        tags = [*PROJECT_TAGS, {"Key": "lambdaserve:stage", "Value": name}]
        (deployment,) = [d for d in resources(template, "AWS::ApiGateway::Deployment") if d.startswith(part)]
        assert template["Resources"][deployment]["DependsOn"] == [f"{part}IrisPredictMethod"]
        assert properties(template, f"{part}Stage") == {
            "RestApiId": {"Ref": f"{part}Api"},
            "StageName": name,
            "DeploymentId": {"Ref": deployment},
            "Tags": tags,
        }
        assert properties(template, f"{part}ApiKey") == {
            "Name": f"lambdaserve-demo-{name}",
            "Enabled": True,
            "Tags": tags,
        }
        assert properties(template, f"{part}UsagePlan") == {
            "UsagePlanName": f"lambdaserve-demo-{name}",
            "ApiStages": [{"ApiId": {"Ref": f"{part}Api"}, "Stage": {"Ref": f"{part}Stage"}}],
            "Throttle": {"RateLimit": 10.0, "BurstLimit": 10},
            "Quota": {"Limit": 100, "Period": "DAY"},
            "Tags": tags,
        }
        assert properties(template, f"{part}UsagePlanKey") == {
            "KeyId": {"Ref": f"{part}ApiKey"},
            "KeyType": "API_KEY",
            "UsagePlanId": {"Ref": f"{part}UsagePlan"},
        }
    unlimited = properties(build_template([stage("test", release())]), "TestUsagePlan")
    assert "Throttle" not in unlimited
    assert "Quota" not in unlimited


def test_a_changed_api_is_deployed_again_and_the_stage_keeps_its_logical_id() -> None:
    before = build_template([stage("test", release())])
    after = build_template([stage("test", release()), stage("test", release("news"))])
    (old,) = resources(before, "AWS::ApiGateway::Deployment")
    (new,) = resources(after, "AWS::ApiGateway::Deployment")
    assert old != new
    assert properties(after, "TestStage")["DeploymentId"] == {"Ref": new}
    # Adding a model leaves every logical ID of the others as it was: nothing is replaced.
    assert set(before["Resources"]) - {old} <= set(after["Resources"])


def test_the_outputs_give_each_endpoint_and_each_api_key_id() -> None:
    template = build_template([stage("test", release()), stage("prod", release("news"))])
    outputs = template["Outputs"]
    assert outputs["IrisTestEndpoint"]["Value"] == {
        "Fn::Sub": "https://${TestApi}.execute-api.eu-west-1.amazonaws.com/test/iris/predict"
    }
    assert outputs["NewsProdEndpoint"]["Value"] == {
        "Fn::Sub": "https://${ProdApi}.execute-api.eu-west-1.amazonaws.com/prod/news/predict"
    }
    assert outputs["TestApiKeyId"]["Value"] == {"Ref": "TestApiKey"}
    assert "get-api-key" in outputs["TestApiKeyId"]["Description"]
    assert "--include-value" in outputs["TestApiKeyId"]["Description"]
    assert outputs["ModelBucket"] == {
        "Description": outputs["ModelBucket"]["Description"],
        "Value": {"Ref": "ModelBucket"},
    }
    assert outputs["ImageRepositoryUri"]["Value"] == {"Fn::GetAtt": ["ImageRepository", "RepositoryUri"]}


def test_every_resource_that_takes_tags_has_the_project_and_model_tags() -> None:
    settings = AwsFunctionSettings(keep_warm=True)
    template = build_template([stage("test", release(), function=settings), stage("test", release("news"))])
    untaggable = {
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::Lambda::Permission",
        "AWS::ApiGateway::Resource",
        "AWS::ApiGateway::Method",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::UsagePlanKey",
    }
    for name, resource in template["Resources"].items():
        tags = resource["Properties"].get("Tags")
        if resource["Type"] in untaggable:
            assert tags is None, name
        elif name.startswith(("Iris", "News")):
            assert tags == model_tags(name[:4].lower()), name
        elif name.startswith("Test"):  # the stage's API, stage, key and usage plan
            assert tags == [*PROJECT_TAGS, {"Key": "lambdaserve:stage", "Value": "test"}], name
        else:
            assert tags == PROJECT_TAGS, name


# -- names and refusals ------------------------------------------------------------------
def test_logical_ids_keep_names_apart() -> None:
    assert logical_part("iris") == "Iris"
    assert logical_part("prod") == "Prod"
    parts = {logical_part(name) for name in ("my-model", "my_model", "mymodel", "Prod", "prod", "canary_1")}
    assert len(parts) == 6
    assert all(part.isalnum() for part in parts)


@pytest.mark.parametrize(("name", "problem"), [("pre-prod", "API Gateway stage"), ("2024", "alias")])
def test_a_stage_name_aws_refuses_is_an_error_with_a_fix(name: str, problem: str) -> None:
    with pytest.raises(LambdaserveError, match=problem) as caught:
        build_template([stage(name, release())])
    assert caught.value.hint


def test_settings_that_cannot_be_shared_are_refused() -> None:
    big = AwsFunctionSettings(memory_mb=2048)
    with pytest.raises(LambdaserveError, match="function settings"):
        build_template([stage("test", release(), function=big), stage("prod", release())])
    limited = UsagePlanSettings(rate=1, burst=1)
    with pytest.raises(LambdaserveError, match="usage plans"):
        build_template([stage("test", release(), plan=limited), stage("test", release("news"))])
    with pytest.raises(LambdaserveError, match="no model has a stage"):
        build_template([])


# -- output ------------------------------------------------------------------------------
def test_yaml_and_json_hold_the_same_template_and_the_same_input_gives_the_same_text() -> None:
    stages = [
        stage("test", release()),
        stage("prod", release(version=1), canary=release(version=2), weight=10),
    ]
    text = dump_template(build_template(stages))
    assert text == dump_template(build_template(list(reversed(stages))))
    assert "*id0" not in text  # CloudFormation refuses YAML aliases
    assert yaml.safe_load(text) == json.loads(dump_template(build_template(stages), "json"))


CFN_LINT_CASES = {
    "one-model": [stage("test", release())],
    "two-models-two-stages": [
        stage("test", release("iris", 2, proba=True)),
        stage("prod", release("iris", 1, proba=True)),
        stage("test", release("news-topics", 1)),
        stage("prod", release("news-topics", 1)),
    ],
    "keep-warm-provisioned-canary": [
        stage(
            "test",
            release("iris", 2, proba=True),
            function=AwsFunctionSettings(provisioned_concurrency=2, keep_warm=True, reserved_concurrency=10),
            plan=UsagePlanSettings(10, 10, 100, "DAY"),
        ),
        stage(
            "prod",
            release("iris", 1, proba=True),
            canary=release("iris", 2, proba=True),
            weight=10,
            function=AwsFunctionSettings(keep_warm=True, reserved_concurrency=10),
            plan=UsagePlanSettings(10, 10, 100, "DAY"),
        ),
        stage("prod", release("news_v2", 4), plan=UsagePlanSettings(10, 10, 100, "DAY")),
    ],
}


def test_cfn_lint_finds_nothing_in_the_templates(tmp_path: Path) -> None:
    files = []
    for case, stages in CFN_LINT_CASES.items():
        path = tmp_path / f"{case}.yaml"
        path.write_text(dump_template(build_template(stages)))
        files.append(path)
    path = tmp_path / "keep-warm-provisioned-canary.json"  # the same template, as JSON
    path.write_text(dump_template(build_template(CFN_LINT_CASES["keep-warm-provisioned-canary"]), "json"))
    files.append(path)
    known = Names("demo", "123456789012", "us-east-1")
    known_account = [stage("test", release(image_uri=known.image_uri(TAG)), names=known)]
    path = tmp_path / "known-account.yaml"
    path.write_text(dump_template(build_template(known_account)))
    files.append(path)
    # Informational checks too (I3011: a stateful resource says what happens when it is deleted).
    done = subprocess.run(
        [str(CFN_LINT), "--include-checks", "I", "--", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_capture_is_the_stage_variable_of_the_stages_that_ask_for_it() -> None:
    template = build_template([stage("test", release(), capture=0.1), stage("prod", release("news", 3))])
    assert properties(template, "TestStage")["Variables"] == {"lambdaserveCapture": "0.1"}
    assert "Variables" not in properties(template, "ProdStage")
