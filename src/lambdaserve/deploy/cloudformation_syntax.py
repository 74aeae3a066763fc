"""CloudFormation's syntax as the export writes it: intrinsic functions, logical IDs, YAML.

Long-form intrinsic functions only (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), so the same
template is valid JSON and YAML without custom tags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from lambdaserve.deploy.names import Names
from lambdaserve.errors import LambdaserveError

# The account as CloudFormation resolves it where the template is deployed (in Fn::Sub strings).
ACCOUNT_PLACEHOLDER = "${AWS::AccountId}"
FORMATS = ("yaml", "json")
_SIMPLE_NAME = re.compile(r"[a-z][a-z0-9]*")


def dump_template(template: Mapping[str, Any], fmt: str = "yaml") -> str:
    """The template as YAML (long-form intrinsic functions, so no custom tags) or JSON."""
    if fmt == "json":
        return json.dumps(template, indent=2) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown template format {fmt!r}; use one of {FORMATS}")
    try:
        import yaml
    except ImportError:
        raise LambdaserveError(
            "Writing YAML needs PyYAML, which is not installed.",
            "Install the AWS extra (pip install 'lambdaserve[aws]'), or write JSON: -o template.json",
        ) from None
    # Resources share tag lists, which PyYAML would write once and then as aliases (*id001);
    # CloudFormation rejects aliases, so dump a copy that shares nothing. No line folding:
    # a folded Fn::Sub string is hard to read and to diff.
    unshared = json.loads(json.dumps(template))
    text: str = yaml.safe_dump(unshared, sort_keys=False, default_flow_style=False, width=1_000_000)
    return text


def logical_part(name: str) -> str:
    """A model or stage name as part of a logical ID (letters and digits only), one to one.

    ``iris`` -> ``Iris``. A name with other characters or capitals keeps its letters and
    digits and gets a hash of itself, so ``my-model`` and ``my_model`` stay apart.
    """
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    if _SIMPLE_NAME.fullmatch(name):
        return camel
    return f"{camel}{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def bucket_name(names: Names) -> str:
    """The bucket's name, with the account left to CloudFormation when it is the placeholder."""
    if names.account != ACCOUNT_PLACEHOLDER:
        return names.bucket
    dummy = "9" * 12  # every account ID has 12 digits
    example = dataclasses.replace(names, account=dummy).bucket
    if not example.endswith(f"-{dummy}-{names.region}"):
        raise LambdaserveError(
            f"The bucket name of project {names.project!r} in {names.region} is longer than S3 "
            "allows, and lambdaserve shortens it with a hash that includes the account ID.",
            "Pass --account with the 12-digit ID of the account you deploy to, or a shorter --project.",
        )
    head, _, tail = example.rpartition(dummy)
    return f"{head}{ACCOUNT_PLACEHOLDER}{tail}"


def ref(logical_id: str) -> dict[str, Any]:
    return {"Ref": logical_id}


def get_att(logical_id: str, attribute: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def sub(text: str) -> Any:
    """``text`` through Fn::Sub when it holds ``${...}``, else as it is (cfn-lint flags a useless Sub)."""
    return {"Fn::Sub": text} if "${" in text else text


def cfn_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]
