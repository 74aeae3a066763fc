"""The project's AWS resources as one CloudFormation template, for users' own IaC pipelines.

A pure function of the desired state (``spec.Desired``, one per model and stage): no AWS
call, no boto3. Names and tags are ``names.Names``'s, the same as ``lambdaserve deploy``
gives, so one account and region holds a project deployed one way or the other, not both.

Two facts of CloudFormation shape the template:

- Storage before service. Lambda refuses to create a function whose image is not in ECR
  yet, and the function's environment names the model's S3 object version, known only
  after the upload. So the template holds the bucket and the repository and a parameter
  ``StorageOnly``: the first deploy with ``StorageOnly=true`` creates only those two; the
  pipeline uploads the model files and pushes the images, then deploys with the default
  ``StorageOnly=false`` and the object versions (a ``Rules`` entry refuses them empty).
  Both are kept when the stack is deleted: they hold every released model and image.
- One configuration per stack operation. ``AWS::Lambda::Version`` publishes whatever the
  function's configuration is when the version resource is created, and one stack
  operation gives the function one configuration. So the function carries one release
  per model (``configured``: the one the last ``promote`` or ``rollback`` brought in), and
  the Lambda versions of the other releases that a stage or a canary serves must come
  from earlier stack updates: apply the export after each change, as a pipeline does.
  ``releases_needing_history`` names the models for which a new stack would be wrong.
  For the same reason, settings (memory, timeout, image) reach an existing version only
  when a new one is published: version resources are keyed by model version alone.

Logical IDs come from model and stage names alone (never from positions), so adding a
model later does not make CloudFormation replace the others' resources. The output is
deterministic: the same desired state gives the same text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lambdaserve.deploy.api_plan import capture_value
from lambdaserve.deploy.cloudformation_syntax import bucket_name, cfn_tags, get_att, logical_part, ref, sub
from lambdaserve.deploy.lambda_plan import WARM_EVENT
from lambdaserve.deploy.names import Names, check_api_stage
from lambdaserve.deploy.planner import TRUST_POLICY, lambda_pull_statement, lifecycle_policy
from lambdaserve.deploy.spec import KEEP_WARM_SCHEDULE, AwsFunctionSettings, Desired, Release
from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime.capture import STAGE_VARIABLE as CAPTURE_VARIABLE
from lambdaserve.runtime.variables import MODEL, REFERENCE

KEEP_WARM_INPUT = json.dumps(WARM_EVENT)
STORAGE_ONLY = "StorageOnly"  # the parameter
SERVING = "Serving"  # the condition every resource but the bucket and the repository has
BUCKET, REPOSITORY = "ModelBucket", "ImageRepository"
ROUTE_PARTS = {"predict": "Predict", "predict_proba": "PredictProba", "explain": "Explain"}


def build_template(
    desired: Sequence[Desired], *, configured: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The template for these model stages, all of one project, account and region.

    ``configured`` maps a model to the version whose configuration its function carries
    (see the module docstring); by default, the highest version any of its stages serves.
    """
    if not desired:
        raise LambdaserveError(
            "Nothing to export: no model has a stage.",
            "Push and promote one first: lambdaserve models push MODEL_FILE --name NAME, "
            "then lambdaserve promote NAME 1 --stage test",
        )
    names = desired[0].names
    if any(d.names != names for d in desired):
        raise ValueError("a template holds one project in one account and region")
    by_model: dict[str, list[Desired]] = {}
    for d in sorted(desired, key=lambda d: (d.model, d.stage)):
        check_api_stage(d.stage)
        by_model.setdefault(d.model, []).append(d)
    template = _Template(names)
    for model, stages in by_model.items():
        releases = {r.version: r for d in stages for r in d.releases()}
        version = (configured or {}).get(model, max(releases))
        if version not in releases:
            raise ValueError(f"{model} version {version} is served by none of the stages exported")
        template.add_model(stages, releases, releases[version])
    template.add_api(by_model)
    return template.to_dict()


def releases_needing_history(desired: Iterable[Desired]) -> dict[str, list[int]]:
    """Models whose stages serve more than one release: a new stack cannot publish them right."""
    served: dict[str, set[int]] = {}
    for d in desired:
        served.setdefault(d.model, set()).update(r.version for r in d.releases())
    return {model: sorted(versions) for model, versions in sorted(served.items()) if len(versions) > 1}


class _Template:
    """The template's sections, filled model by model; a logical ID can be taken once only."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.parameters: dict[str, Any] = {}
        self.conditions: dict[str, Any] = {SERVING: {"Fn::Equals": [ref(STORAGE_ONLY), "false"]}}
        self.resources: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.models: list[str] = []
        self.object_versions: list[str] = []
        self.add_storage()

    def add(
        self,
        logical_id: str,
        kind: str,
        properties: dict[str, Any],
        tags: Mapping[str, str] | None = None,
        **attributes: Any,
    ) -> str:
        """Add a resource, created under the Serving condition unless ``Condition=None``."""
        if logical_id in self.resources:
            raise ValueError(f"two resources would be called {logical_id}")
        attributes = {"Condition": SERVING, **attributes}
        if tags is not None:
            properties = {**properties, "Tags": cfn_tags(tags)}
        self.resources[logical_id] = {
            "Type": kind,
            **{name: value for name, value in attributes.items() if value is not None},
            "Properties": properties,
        }
        return logical_id

    def parameter(self, name: str, description: str, default: str = "", **constraints: Any) -> str:
        self.parameters[name] = {
            "Type": "String",
            **constraints,
            "Default": default,
            "Description": description,
        }
        return name

    def output(self, logical_id: str, description: str, value: Any, *, always: bool = False) -> None:
        self.outputs[logical_id] = {"Description": description, "Value": value}
        if not always:
            self.outputs[logical_id]["Condition"] = SERVING

    def add_storage(self) -> None:
        self.parameter(
            STORAGE_ONLY,
            "true on the stack's first deploy: only the bucket and the image repository, so the "
            "pipeline can upload the model files and push the images the functions need.",
            "false",
            AllowedValues=["false", "true"],
        )
        tags = self.names.tags()
        # Kept when the stack goes: they hold every released model and image (rollback targets).
        kept = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", "Condition": None}
        encryption = {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}  # SSE-S3
        blocked = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        bucket = self.add(
            BUCKET,
            "AWS::S3::Bucket",
            {
                "BucketName": sub(bucket_name(self.names)),
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [encryption]},
                "PublicAccessBlockConfiguration": dict.fromkeys(blocked, True),
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            },
            tags,
            **kept,
        )
        repository = self.add(
            REPOSITORY,
            "AWS::ECR::Repository",
            {
                "RepositoryName": self.names.repository,
                "ImageScanningConfiguration": {"ScanOnPush": True},
                # A tag is a hash of what went into the image: it never moves, as with lambdaserve deploy.
                "ImageTagMutability": "IMMUTABLE",
                # Lambda pulls with the service's identity, for the project's functions only.
                "RepositoryPolicyText": {
                    "Version": "2012-10-17",
                    "Statement": [
                        lambda_pull_statement(
                            sub(
                                "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:"
                                f"function:{self.names.project}-*"
                            )
                        )
                    ],
                },
                "LifecyclePolicy": {"LifecyclePolicyText": json.dumps(lifecycle_policy(), sort_keys=True)},
            },
            tags,
            **kept,
        )
        self.output(bucket, "Upload each model file here, at its ModelKey.", ref(bucket), always=True)
        self.output(
            f"{repository}Uri",
            "Push the images here (an empty ImageUri parameter means an image of this repository).",
            get_att(repository, "RepositoryUri"),
            always=True,
        )

    # -- per model -------------------------------------------------------------------
    def add_model(self, stages: list[Desired], releases: Mapping[int, Release], current: Release) -> None:
        names, model, part = self.names, current.model, logical_part(current.model)
        self.models.append(model)
        settings = _function_settings(model, stages)
        tags = {**names.tags(model), **stages[0].build_tags}
        ours = current.image_uri.startswith(names.image_uri(""))
        tag = current.image_uri.rsplit(":", 1)[-1] if ours else ""
        image = self.parameter(
            f"{part}ImageUri",
            f"The image of {model}'s function (Python {current.python}, requirements: "
            f"{', '.join(current.requirements)}). Empty: {tag} in ImageRepository, the image "
            f"`lambdaserve export image {model}` writes the build context of.",
            "" if ours else current.image_uri,
        )
        self.conditions[f"{part}ImageFromStack"] = {"Fn::Equals": [ref(image), ""]}
        key = self.parameter(
            f"{part}ModelKey",
            f"The S3 key of {model} version {current.version}: upload the file "
            f"models/{current.sha256}{current.suffix} of the lambdaserve state directory there.",
            names.bundle_key(model, current.sha256, current.suffix),
        )
        object_version = self.parameter(
            f"{part}ModelObjectVersion", f"The S3 version ID that the upload to {key} returned."
        )
        self.object_versions.append(object_version)

        read_bundles = {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": sub(f"arn:${{AWS::Partition}}:s3:::${{{BUCKET}}}/{names.bundle_prefix(model)}*"),
        }
        log_group_arn = (
            "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:" + names.log_group(model)
        )
        write_logs = {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [sub(f"{log_group_arn}:*"), sub(f"{log_group_arn}:log-stream:*")],
        }
        role = self.add(
            f"{part}Role",
            "AWS::IAM::Role",
            {
                "RoleName": names.role(model),
                "AssumeRolePolicyDocument": TRUST_POLICY,
                "Policies": [
                    {
                        "PolicyName": names.role_policy(),
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": [read_bundles]},
                    },
                    {
                        "PolicyName": names.log_policy(),
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": [write_logs]},
                    },
                ],
            },
            names.tags(model),
        )
        log_group = self.add(
            f"{part}LogGroup",
            "AWS::Logs::LogGroup",
            {"LogGroupName": names.log_group(model), "RetentionInDays": settings.log_retention_days},
            names.tags(model),
            # Said, not defaulted: the logs go with the stack, as lambdaserve destroy removes them.
            DeletionPolicy="Delete",
            UpdateReplacePolicy="Delete",
        )
        variables = {
            **current.environment(),
            # The runtime's model location (runtime/source.py), as lambdaserve deploy writes it.
            MODEL: sub(f"s3://${{{BUCKET}}}/${{{key}}}?versionId=${{{object_version}}}"),
        }
        if current.reference_file is not None:  # /explain's statistics for tabular input
            reference_key = self.parameter(
                f"{part}ReferenceKey",
                f"The S3 key of {model} version {current.version}'s reference statistics: upload the "
                f"file references/{current.reference_file.name} of the lambdaserve state directory there.",
                names.bundle_prefix(model) + current.reference_file.name,
            )
            reference_version = self.parameter(
                f"{part}ReferenceObjectVersion",
                f"The S3 version ID that the upload to {reference_key} returned.",
            )
            self.object_versions.append(reference_version)
            variables[REFERENCE] = sub(
                f"s3://${{{BUCKET}}}/${{{reference_key}}}?versionId=${{{reference_version}}}"
            )
        stack_image = sub(f"${{{REPOSITORY}.RepositoryUri}}:{tag}")
        function: dict[str, Any] = {
            "FunctionName": names.function(model),
            "Description": f"lambdaserve {names.project}/{model}",
            "PackageType": "Image",
            "Code": {"ImageUri": {"Fn::If": [f"{part}ImageFromStack", stack_image, ref(image)]}},
            "Architectures": [settings.architecture],
            "Role": get_att(role, "Arn"),
            "MemorySize": settings.memory_mb,
            "Timeout": settings.timeout_s,
            "Environment": {"Variables": dict(sorted(variables.items()))},
        }
        if settings.reserved_concurrency is not None:
            function["ReservedConcurrentExecutions"] = settings.reserved_concurrency
        # The log group comes first, with its retention: a function that logs before it exists
        # (an alias's provisioned concurrency starts environments) makes Lambda create it
        # without retention, and the stack then fails to create it.
        self.add(f"{part}Function", "AWS::Lambda::Function", function, tags, DependsOn=[log_group])
        versions = {
            number: self.add(
                f"{part}Version{number}",
                "AWS::Lambda::Version",
                {"FunctionName": ref(f"{part}Function"), "Description": release.description()},
            )
            for number, release in sorted(releases.items())
        }
        for desired in stages:
            self.add_alias(desired, part, versions)

    def add_alias(self, desired: Desired, part: str, versions: Mapping[int, str]) -> None:
        names, model, stage = self.names, desired.model, desired.stage
        prefix = f"{part}{logical_part(stage)}"
        alias: dict[str, Any] = {
            "Name": stage,
            "FunctionName": ref(f"{part}Function"),
            "FunctionVersion": get_att(versions[desired.release.version], "Version"),
            "Description": f"lambdaserve stage {stage}",
        }
        canary = desired.canary if desired.canary_weight > 0 else None
        if canary is not None:
            # Lambda takes a fraction, the store keeps a percentage; rounded as lambdaserve deploy does.
            fraction = round(desired.canary_weight / 100, 4)
            weight = {
                "FunctionVersion": get_att(versions[canary.version], "Version"),
                "FunctionWeight": fraction,
            }
            alias["RoutingConfig"] = {"AdditionalVersionWeights": [weight]}
        provisioned = desired.function.provisioned_concurrency
        if provisioned and canary is not None:
            raise LambdaserveError(
                f"Lambda keeps no provisioned concurrency on an alias that splits traffic, and stage "
                f"{stage!r} of {model!r} has a canary.",
                f"Finish the canary (lambdaserve promote {model} {canary.version} --stage {stage}) or "
                "roll it back, or leave out --provisioned-concurrency.",
            )
        if provisioned:
            alias["ProvisionedConcurrencyConfig"] = {"ProvisionedConcurrentExecutions": provisioned}
        self.add(f"{prefix}Alias", "AWS::Lambda::Alias", alias)
        invoke = {"FunctionName": ref(f"{prefix}Alias"), "Action": "lambda:InvokeFunction"}
        api = f"{logical_part(stage)}Api"  # the stage's own REST API
        source = f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:{names.account}:${{{api}}}"
        self.add(
            f"{prefix}ApiPermission",
            "AWS::Lambda::Permission",
            {
                **invoke,
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": sub(f"{source}/{stage}/POST/{model}/*"),
            },
        )
        if desired.function.keep_warm:
            rule = {
                "Name": names.keep_warm_rule(model, stage),
                "Description": f"Keeps an environment of {model} in stage {stage} warm",
                "ScheduleExpression": KEEP_WARM_SCHEDULE,
                "State": "ENABLED",
                "Targets": [{"Id": "warm", "Arn": ref(f"{prefix}Alias"), "Input": KEEP_WARM_INPUT}],
            }
            self.add(f"{prefix}KeepWarmRule", "AWS::Events::Rule", rule, names.tags(model))
            self.add(
                f"{prefix}KeepWarmPermission",
                "AWS::Lambda::Permission",
                {
                    **invoke,
                    "Principal": "events.amazonaws.com",
                    "SourceArn": get_att(f"{prefix}KeepWarmRule", "Arn"),
                },
            )

    # -- one REST API per stage ---------------------------------------------------------
    def add_api(self, by_model: Mapping[str, list[Desired]]) -> None:
        by_stage: dict[str, list[Desired]] = {}
        for d in (d for stages in by_model.values() for d in stages):
            by_stage.setdefault(d.stage, []).append(d)
        for stage, members in sorted(by_stage.items()):
            self.add_api_stage(stage, sorted(members, key=lambda d: d.model))

    def add_api_stage(self, stage: str, members: list[Desired]) -> None:
        """The stage's REST API with its models' routes, its deployment, stage, key and usage plan."""
        names, part, tags = self.names, logical_part(stage), self.names.tags(stage=stage)
        plans = {d.plan for d in members}
        if len(plans) > 1:
            raise LambdaserveError(
                f"The models of stage {stage!r} ask for different usage plans.",
                "A stage has one usage plan and one API key for all its models: give them the same limits.",
            )
        plan = plans.pop()
        api = self.add(
            f"{part}Api",
            "AWS::ApiGateway::RestApi",
            {
                "Name": names.rest_api(stage),
                "Description": f"lambdaserve project {names.project}, stage {stage}",
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                "ApiKeySourceType": "HEADER",
            },
            tags,
        )
        in_api = {"RestApiId": ref(api)}
        methods: list[str] = []
        for d in members:
            model_part = f"{part}{logical_part(d.model)}"
            self.add(
                f"{model_part}Resource",
                "AWS::ApiGateway::Resource",
                {**in_api, "ParentId": get_att(api, "RootResourceId"), "PathPart": d.model},
            )
            # The same integration as lambdaserve deploy's: the model's alias of the stage's name
            # (an alias's Ref is its ARN).
            alias = f"{logical_part(d.model)}{part}Alias"
            uri = sub(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                f"${{{alias}}}/invocations"
            )
            for route in d.routes:
                resource = f"{model_part}{ROUTE_PARTS[route]}Resource"
                self.add(
                    resource,
                    "AWS::ApiGateway::Resource",
                    {**in_api, "ParentId": ref(f"{model_part}Resource"), "PathPart": route},
                )
                method = {
                    **in_api,
                    "ResourceId": ref(resource),
                    "HttpMethod": "POST",
                    "AuthorizationType": "NONE",
                    "ApiKeyRequired": True,
                    "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": uri},
                }
                methods.append(
                    self.add(f"{model_part}{ROUTE_PARTS[route]}Method", "AWS::ApiGateway::Method", method)
                )
        # A Deployment snapshots the API when it is created, and an update that leaves its own
        # properties alone never redeploys it: a hash of the methods in its logical ID makes
        # a changed API a new deployment, which the stage then points at.
        snapshot = {method: self.resources[method]["Properties"] for method in methods}
        digest = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:10]
        deployment = self.add(
            f"{part}Deployment{digest}",
            "AWS::ApiGateway::Deployment",
            {**in_api, "Description": f"lambdaserve stage {stage}"},
            DependsOn=methods,  # deploying an API before its methods exist fails
        )
        api_stage: dict[str, Any] = {**in_api, "StageName": stage, "DeploymentId": ref(deployment)}
        rates = {d.capture for d in members if d.capture}
        if rates:  # one stage, one variable: the highest any of its models asks for
            api_stage["Variables"] = {CAPTURE_VARIABLE: capture_value(max(rates))}
        self.add(f"{part}Stage", "AWS::ApiGateway::Stage", api_stage, tags)
        key = {"Name": names.api_key(stage), "Enabled": True}
        self.add(f"{part}ApiKey", "AWS::ApiGateway::ApiKey", key, tags)
        usage_plan: dict[str, Any] = {
            "UsagePlanName": names.usage_plan(stage),
            "ApiStages": [{"ApiId": ref(api), "Stage": ref(f"{part}Stage")}],
        }
        throttle, quota = plan.throttle(), plan.quota()
        if throttle is not None:
            usage_plan["Throttle"] = {
                "RateLimit": throttle["rateLimit"],
                "BurstLimit": throttle["burstLimit"],
            }
        if quota is not None:
            usage_plan["Quota"] = {"Limit": quota["limit"], "Period": quota["period"]}
        self.add(f"{part}UsagePlan", "AWS::ApiGateway::UsagePlan", usage_plan, tags)
        plan_key = {
            "KeyId": ref(f"{part}ApiKey"),
            "KeyType": "API_KEY",
            "UsagePlanId": ref(f"{part}UsagePlan"),
        }
        self.add(f"{part}UsagePlanKey", "AWS::ApiGateway::UsagePlanKey", plan_key)
        self.output(
            f"{part}ApiKeyId",
            f"The API key of stage {stage}. Its value: aws apigateway get-api-key --api-key THIS_ID "
            "--include-value --query value --output text",
            ref(f"{part}ApiKey"),
        )
        for d in members:
            self.output(
                f"{logical_part(d.model)}{part}Endpoint",
                f"{d.model} in stage {stage}: POST JSON here with the header x-api-key",
                sub(names.endpoint(f"${{{api}}}", stage, d.model)),
            )

    def to_dict(self) -> dict[str, Any]:
        assertions = [
            {
                "Assert": {"Fn::Not": [{"Fn::Equals": [ref(parameter), ""]}]},
                "AssertDescription": f"Give {parameter}, the S3 version ID of the uploaded model file "
                f"(or deploy with {STORAGE_ONLY}=true first, to create the bucket).",
            }
            for parameter in self.object_versions
        ]
        rule = {"RuleCondition": {"Fn::Equals": [ref(STORAGE_ONLY), "false"]}, "Assertions": assertions}
        models = ", ".join(self.models) if len(self.models) <= 10 else f"{len(self.models)} models"
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": f"lambdaserve project {self.names.project} ({models}), exported for "
            f"{self.names.region}. Deploy with {STORAGE_ONLY}=true first (bucket and image repository), "
            "upload the model files and push the images, then deploy with the ModelObjectVersion "
            "parameters. Needs CAPABILITY_NAMED_IAM.",
            "Parameters": self.parameters,
            "Rules": {"ModelObjectVersionsGiven": rule},
            "Conditions": self.conditions,
            "Resources": self.resources,
            "Outputs": self.outputs,
        }


def _function_settings(model: str, stages: list[Desired]) -> AwsFunctionSettings:
    """The settings of the model's one function, which all its stages share."""
    shared = {dataclasses.replace(d.function, provisioned_concurrency=None, keep_warm=False) for d in stages}
    if len(shared) > 1:
        raise LambdaserveError(
            f"The stages of {model!r} ask for different function settings.",
            "Memory, timeout, reserved concurrency and log retention belong to the function, "
            "which all stages of a model share: give them the same values.",
        )
    return shared.pop()
