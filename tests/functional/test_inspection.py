"""Inspecting model files without loading them, and refusing the dangerous ones.

Through ``inspect_model`` for what a report says, and through the CLI for what a user
sees: ``lambdaserve inspect`` reports, ``package`` and ``invoke`` refuse, and a hostile
file never gets to run.
"""

from __future__ import annotations

import importlib.metadata as metadata
import io
import json
import os
import pickle
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from typer.testing import CliRunner

from lambdaserve.bundle.inspection import inspect_model
from lambdaserve.cli.app import app
from lambdaserve.errors import LambdaserveError

SKLEARN = metadata.version("scikit-learn")
SYSTEM = f"{os.system.__module__}.system"


class RunsShellCommand:
    """What a hostile pickle holds: unpickling it runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def add_one(values: np.ndarray) -> np.ndarray:
    return values + 1


def hidden_after_an_empty_object_array(command: str) -> bytes:
    """joblib reads an object array's nested pickle even when it holds no items."""
    buffer = io.BytesIO()
    joblib.dump([np.array([], dtype=object), RunsShellCommand(command)], buffer)
    nested = pickle.dumps(np.array([], dtype=object), protocol=5)
    assert buffer.getvalue().count(nested) == 1
    return buffer.getvalue().replace(nested, pickle.dumps(np.array([], dtype=object), protocol=2))


def hidden_behind_a_wrong_item_size(command: str) -> bytes:
    """numpy ignores the item size a float64 dtype's state claims; a scan that trusts it skips too little."""
    array = np.zeros(16)
    array.view(np.uint8)[16] = ord(".")  # where a 1-byte item size ends the array: a STOP opcode
    buffer = io.BytesIO()
    joblib.dump([array, RunsShellCommand(command)], buffer)
    honest = b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # dtype state: elsize -1, alignment -1
    assert buffer.getvalue().count(honest) == 1
    return buffer.getvalue().replace(honest, b"NNNJ\x01\x00\x00\x00J\xff\xff\xff\xffK\x00t")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "owned"


@pytest.fixture
def malicious_pickle(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(RunsShellCommand(f"touch {shlex.quote(str(marker))}")))
    return path


@pytest.mark.parametrize("fmt", ["pickle", "joblib", "skops"])
def test_an_iris_model_pins_the_scikit_learn_version_it_was_saved_with(
    iris_models: dict[str, Path], fmt: str
) -> None:
    # GIVEN the iris pipeline saved by the tabular example
    # WHEN it is inspected
    report = inspect_model(iris_models[fmt])

    # THEN nothing in it is dangerous and scikit-learn is pinned from the file
    assert report.format == fmt
    assert report.dangerous == []
    assert report.untrusted_types == []
    assert report.recorded_versions == {"scikit-learn": SKLEARN}
    sklearn_pin = next(pin for pin in report.pins if pin.name == "scikit-learn")
    assert (sklearn_pin.requirement, sklearn_pin.source) == (f"scikit-learn=={SKLEARN}", "file")
    assert "sklearn.linear_model._logistic.LogisticRegression" in report.imports


def test_an_onnx_model_pins_its_runtime_and_numpy(iris_models: dict[str, Path]) -> None:
    # GIVEN the iris pipeline converted to ONNX
    # WHEN it is inspected
    report = inspect_model(iris_models["onnx"])

    # THEN it needs only the ONNX runtime and numpy, at the installed versions
    assert report.format == "onnx"
    assert report.requirements == [
        f"numpy=={metadata.version('numpy')}",
        f"onnxruntime=={metadata.version('onnxruntime')}",
    ]
    assert not report.needs_trust


@pytest.mark.parametrize(
    ("compress", "compression"),
    [(3, "zlib"), (("gzip", 3), "gzip"), (("bz2", 3), "bz2"), (("xz", 3), "xz"), (("lzma", 3), "lzma")],
)
def test_a_compressed_joblib_file_is_scanned_after_decompression(
    iris_estimator: Any, tmp_path: Path, compress: Any, compression: str
) -> None:
    # GIVEN the iris pipeline saved by joblib with compression
    path = tmp_path / "iris.joblib"
    joblib.dump(iris_estimator, path, compress=compress)

    # WHEN it is inspected
    report = inspect_model(path)

    # THEN the pickle inside is read to the end: its version is found and nothing is flagged
    assert report.compression == compression
    assert report.dangerous == []
    assert f"scikit-learn=={SKLEARN}" in report.requirements
    assert f"joblib=={metadata.version('joblib')}" in report.requirements


def test_a_dangerous_call_inside_a_compressed_joblib_file_is_found(tmp_path: Path, marker: Path) -> None:
    # GIVEN a gzip-compressed joblib file with a shell command after a numeric array
    path = tmp_path / "model.joblib"
    joblib.dump([np.arange(1000.0), RunsShellCommand(f"touch {marker}")], path, compress=("gzip", 3))

    # WHEN it is inspected
    report = inspect_model(path)

    # THEN the command's global is reported, and would be refused
    assert [finding.what for finding in report.dangerous] == [SYSTEM]
    with pytest.raises(LambdaserveError, match=r"Refusing model\.joblib"):
        report.check_trust(False)


def test_an_lz4_compressed_joblib_file_gets_a_clear_error(tmp_path: Path) -> None:
    # GIVEN a .joblib file that starts with the lz4 frame magic
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x04\x22\x4d\x18" + bytes(64))

    # WHEN it is inspected THEN the error names lz4 and says how to save it instead
    with pytest.raises(LambdaserveError, match="compressed with lz4, which lambdaserve cannot scan") as error:
        inspect_model(path)
    assert "compress=3" in (error.value.hint or "")


def test_a_pkl_file_that_is_really_a_zip_archive_gets_a_clear_error(tmp_path: Path) -> None:
    # GIVEN a zip archive (a skops file or a PyTorch checkpoint) named .pkl
    path = tmp_path / "model.pkl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x04N.")

    # WHEN it is inspected THEN the error says what it is and what to do
    with pytest.raises(LambdaserveError, match=r"model\.pkl is a zip archive, not a pickle") as error:
        inspect_model(path)
    assert ".skops" in (error.value.hint or "")


def test_a_skops_file_with_an_untrusted_type_is_refused_unless_trusted(tmp_path: Path) -> None:
    # GIVEN a skops file whose pipeline calls a function of ours, which skops does not trust
    features, labels = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 1, 0, 1])
    model = make_pipeline(FunctionTransformer(add_one), LogisticRegression()).fit(features, labels)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    function = f"{add_one.__module__}.{add_one.__qualname__}"

    # WHEN it is inspected
    report = inspect_model(path)

    # THEN the function is named, refused without --trust and accepted with it
    assert report.untrusted_types == [function]
    assert report.dangerous == []
    with pytest.raises(LambdaserveError, match=r"Refusing model\.skops") as error:
        report.check_trust(False)
    assert f"  - {function}" in str(error.value)
    report.check_trust(True)


def test_the_malicious_pickle_really_runs_a_command_when_loaded(malicious_pickle: Path, marker: Path) -> None:
    # GIVEN the hostile file the refusal tests use
    # WHEN plain pickle loads it, in a separate process
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.load(open({str(malicious_pickle)!r}, 'rb'))"],
        check=True,
    )

    # THEN the marker appears: its absence elsewhere proves that nothing was loaded
    assert marker.exists()


def test_inspect_reports_a_malicious_pickle_without_running_it(
    runner: CliRunner, malicious_pickle: Path, marker: Path
) -> None:
    # GIVEN a pickle whose loading would run a shell command
    # WHEN it is inspected
    result = runner.invoke(app, ["inspect", str(malicious_pickle)])

    # THEN the command's global is reported as dangerous, inspect succeeds, nothing ran
    assert result.exit_code == 0, result.output
    assert "Dangerous" in result.output
    assert f"{SYSTEM}: the {SYSTEM.split('.')[0]} module can run programs" in result.output
    assert not marker.exists()


def test_package_refuses_a_malicious_pickle_without_running_it(
    runner: CliRunner, malicious_pickle: Path, marker: Path, tmp_path: Path
) -> None:
    # GIVEN a pickle whose loading would run a shell command
    bundle = tmp_path / "bundle"

    # WHEN it is packaged without --trust
    result = runner.invoke(
        app, ["package", str(malicious_pickle), "--sample", "[[1]]", "-o", str(bundle), "--env", "local"]
    )

    # THEN it is refused with the global named and a hint, no traceback, no bundle, nothing ran
    assert result.exit_code == 1, result.output
    assert "Refusing model.pkl" in result.output
    assert SYSTEM in result.output
    assert "--trust" in result.output
    assert "Traceback" not in result.output
    assert not bundle.exists()
    assert not marker.exists()


def test_invoke_refuses_a_malicious_pickle_without_running_it(
    runner: CliRunner, malicious_pickle: Path, marker: Path
) -> None:
    # GIVEN a pickle whose loading would run a shell command
    # WHEN it is invoked without --trust
    result = runner.invoke(app, ["invoke", str(malicious_pickle), "--data", "[[1]]", "--env", "local"])

    # THEN it is refused before any execution environment starts, and nothing ran
    assert result.exit_code == 1, result.output
    assert "Refusing model.pkl" in result.output
    assert SYSTEM in result.output
    assert "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize("craft", [hidden_after_an_empty_object_array, hidden_behind_a_wrong_item_size])
def test_a_joblib_file_crafted_to_hide_a_call_from_the_scan_is_refused(
    runner: CliRunner, tmp_path: Path, marker: Path, craft: Any
) -> None:
    # GIVEN a joblib file whose bytes after an array are not what a naive skip expects
    path = tmp_path / "model.joblib"
    path.write_bytes(craft(f"touch {shlex.quote(str(marker))}"))

    # WHEN it is packaged without --trust
    result = runner.invoke(
        app, ["package", str(path), "--sample", "[[1]]", "-o", str(tmp_path / "bundle"), "--env", "local"]
    )

    # THEN the hidden command never ran: the file is refused, as dangerous or as unreadable
    assert not marker.exists(), "the scan missed the call and the model was loaded:\n" + result.output
    assert result.exit_code == 1, result.output
    assert "Nothing was loaded" in result.output or "Could not read model.joblib" in result.output


def test_inspect_json_reports_the_text_models_class_pickled_by_value(
    runner: CliRunner, text_model: Path
) -> None:
    # GIVEN the post's kind of model: cloudpickle carries its TopicClassifier class by value
    # WHEN it is inspected with --json
    result = runner.invoke(app, ["inspect", str(text_model), "--json"])

    # THEN the class is reported as code carried by the file, and nothing is dangerous
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["by_value"]["classes"] == ["TopicClassifier"]
    assert report["dangerous"] == []
    assert f"scikit-learn=={SKLEARN}" in report["requirements"]


def test_the_text_model_packages_without_trust(runner: CliRunner, text_model: Path, tmp_path: Path) -> None:
    # GIVEN the text model, whose class is pickled by value
    bundle = tmp_path / "topics"

    # WHEN it is packaged without --trust, in this Python
    sample = '["the shuttle flew to the moon"]'
    result = runner.invoke(
        app, ["package", str(text_model), "--sample", sample, "-o", str(bundle), "--env", "local", "--json"]
    )

    # THEN the bundle is written and predict answered the sample with a topic name
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "lambdaserve.json").read_text())
    assert manifest["trusted"] is False
    assert manifest["sample_output"] == ["space"]
    assert manifest["scan"]["by_value"]["classes"] == ["TopicClassifier"]
    assert (bundle / text_model.name).read_bytes() == text_model.read_bytes()


def test_a_joblib_file_named_pkl_is_recognised_and_served(iris_estimator: Any, tmp_path: Path) -> None:
    # GIVEN joblib.dump(model, "model.pkl"), a common habit
    path = tmp_path / "model.pkl"
    joblib.dump(iris_estimator, path)
    # WHEN it is inspected and invoked
    report = inspect_model(path)
    result = CliRunner().invoke(
        app, ["invoke", str(path), "--env", "local", "--data", "[[5.1, 3.5, 1.4, 0.2]]"]
    )
    # THEN it is read as joblib, said so, and loaded with joblib
    assert report.format == "joblib"
    assert not report.dangerous
    assert any("joblib.dump" in w for w in report.warnings)
    assert result.exit_code == 0, result.stderr
    assert json.loads(json.loads(result.stdout)["body"]) == ["setosa"]
