"""``scan_pickle`` reads what a pickle would import and call, and never does it."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lambdaserve.bundle.pickle_scan import ScanError, scan_pickle

# os.system lives in posix on Linux and macOS, in nt on Windows; the pickle names that module.
SYSTEM = f"{os.system.__module__}.system"


class Reduces:
    """Pickles as a call to ``func(*args)``: what a hostile file does on load."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def scan_bytes(data: bytes, **options: Any) -> Any:
    return scan_pickle(io.BytesIO(data), **options)


def what_is_dangerous(data: bytes, **options: Any) -> list[str]:
    return [finding.what for finding in scan_bytes(data, **options).dangerous]


def short_unicode(text: str) -> bytes:
    encoded = text.encode()
    return b"\x8c" + bytes([len(encoded)]) + encoded


def fitted_pipeline() -> Pipeline:
    """A small DataFrame pipeline with string labels: numeric and object arrays inside."""
    features = pd.DataFrame({"width": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "height": [1.0, 0, 1, 0, 1, 0]})
    labels = np.array(["small", "large", "small", "large", "small", "large"], dtype=object)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels)


def joblib_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_reduce_to_os_system_is_flagged_in_every_protocol(protocol: int) -> None:
    data = pickle.dumps(Reduces(os.system, "touch /tmp/owned"), protocol=protocol)

    scan = scan_bytes(data)

    assert scan.imports == [SYSTEM]
    assert what_is_dangerous(data) == [SYSTEM]
    assert "run programs" in scan.dangerous[0].reason


def test_a_reduce_to_subprocess_popen_is_flagged() -> None:
    data = pickle.dumps(Reduces(subprocess.Popen, ["rm", "-rf", "/"]))

    assert what_is_dangerous(data) == ["subprocess.Popen"]


@pytest.mark.parametrize("func", [builtins.eval, builtins.exec, builtins.getattr])
def test_builtins_that_run_code_are_flagged(func: Any) -> None:
    data = pickle.dumps(Reduces(func, "__import__('os').system('id')"))

    assert what_is_dangerous(data) == [f"builtins.{func.__name__}"]


def test_builtins_models_are_made_of_are_admitted_and_others_refused_as_unknown() -> None:
    # Sets, slices and complex numbers are data; len is harmless, but no model needs it: an
    # allow-list admits what models are made of, not what merely looks harmless.
    admitted = pickle.dumps(
        [{1, 2}, frozenset({3}), slice(1, 5), complex(1, 2), bytearray(b"ab")], protocol=2
    )
    assert what_is_dangerous(admitted) == []
    data = pickle.dumps(Reduces(builtins.len, "four"))
    assert scan_bytes(data).imports == ["builtins.len"]
    [finding] = scan_bytes(data).dangerous
    assert finding.what == "builtins.len"
    assert "not on the allow-list" in finding.reason
    assert scan_bytes(data).refused_globals == ["builtins.len"]


def test_a_module_named_again_through_the_memo_is_still_resolved() -> None:
    # Protocol 4 writes 'subprocess' once and fetches it from the memo for the second global.
    data = pickle.dumps([subprocess.Popen, subprocess.run], protocol=4)
    ops = [op.name for op, _arg, _pos in pickletools.genops(data)]
    assert ops.count("STACK_GLOBAL") == 2
    assert "BINGET" in ops

    scan = scan_bytes(data)

    assert scan.imports == ["subprocess.Popen", "subprocess.run"]
    assert what_is_dangerous(data) == ["subprocess.Popen", "subprocess.run"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"cno_such_module_xyz\nthing\n(tR.", id="GLOBAL"),
        pytest.param(
            b"\x80\x04" + short_unicode("no_such_module_xyz") + short_unicode("thing") + b"\x93)R.",
            id="STACK_GLOBAL",
        ),
    ],
)
def test_a_global_of_a_missing_module_is_listed_without_importing_it(data: bytes) -> None:
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(data)  # the real loader would import it

    scan = scan_bytes(data)

    assert scan.imports == ["no_such_module_xyz.thing"]
    assert scan.modules == ["no_such_module_xyz"]


def test_a_module_in_the_pickle_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_on_import.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef build():\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = b"cside_effect_on_import\nbuild\n(tR."

    scan = scan_bytes(data)

    assert scan.imports == ["side_effect_on_import.build"]
    assert not marker.exists()
    assert "side_effect_on_import" not in sys.modules


def test_a_plain_sklearn_pipeline_has_no_findings_and_records_its_version() -> None:
    scan = scan_bytes(pickle.dumps(fitted_pipeline()))

    assert scan.dangerous == []
    assert not scan.has_by_value_code
    assert scan.recorded_versions == {"scikit-learn": [sklearn.__version__]}
    assert "sklearn.linear_model._logistic.LogisticRegression" in scan.imports
    assert scan.modules[0] == "sklearn"


def make_script_classes() -> tuple[type, type]:
    """Classes as a notebook or script defines them: cloudpickle has no module to name."""

    class TopicLabels:
        def __init__(self) -> None:
            self.names = ["space", "religion"]

        def predict(self, rows: list[int]) -> list[str]:
            return [self.names[row] for row in rows]

    class RestoresItself:
        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

    return TopicLabels, RestoresItself


def test_a_class_pickled_by_value_is_listed_and_not_dangerous() -> None:
    topic_labels, _ = make_script_classes()

    scan = scan_bytes(cloudpickle.dumps(topic_labels()))

    assert scan.by_value_classes == ["TopicLabels"]
    assert scan.dangerous == []
    assert scan.has_by_value_code


def test_a_class_pickled_by_value_that_defines_setstate_is_flagged() -> None:
    _, restores_itself = make_script_classes()

    scan = scan_bytes(cloudpickle.dumps(restores_itself()))

    assert scan.by_value_classes == ["RestoresItself"]
    assert [f.what for f in scan.dangerous] == ["RestoresItself (pickled by value) defines __setstate__"]
    assert "runs while the file loads" in scan.dangerous[0].reason


def test_a_lambda_pickled_by_value_is_listed_as_a_function() -> None:
    lower = lambda text: text.lower()  # noqa: E731

    scan = scan_bytes(cloudpickle.dumps(lower))

    assert scan.by_value_functions == [lower.__qualname__]
    assert scan.by_value_functions[0].endswith("<lambda>")
    assert scan.by_value_classes == []
    assert scan.dangerous == []


def test_an_uncompressed_joblib_file_is_walked_past_its_arrays_to_the_end() -> None:
    data = joblib_bytes(fitted_pipeline())
    stream = io.BytesIO(data)

    scan = scan_pickle(stream, joblib=True)

    assert stream.tell() == len(data)
    assert scan.joblib_arrays > 0
    assert scan.dangerous == []
    assert scan.recorded_versions == {"scikit-learn": [sklearn.__version__]}
    # The classifier comes after every array of the scaler: reaching it means the walk kept its footing.
    assert scan.imports[-1] == "sklearn.linear_model._logistic.LogisticRegression"


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.arange(4096, dtype=np.float64), id="numbers"),
        pytest.param(np.arange(12, dtype=np.int32).reshape(3, 4), id="matrix"),
        pytest.param(np.array(["setosa", "versicolor"], dtype=object), id="strings"),
        pytest.param(np.array(["setosa", "versicolor"]), id="unicode"),
        # joblib writes a nested pickle for every object array, even an empty one.
        pytest.param(np.array([], dtype=object), id="no-strings"),
    ],
)
def test_a_dangerous_call_after_a_joblib_array_is_found(array: np.ndarray) -> None:
    data = joblib_bytes([array, Reduces(os.system, "touch /tmp/owned")])

    scan = scan_bytes(data, joblib=True)

    assert scan.joblib_arrays == 1
    assert [f.what for f in scan.dangerous] == [SYSTEM]


def test_a_dangerous_object_inside_a_joblib_object_array_is_found() -> None:
    array = np.array([Reduces(os.system, "touch /tmp/owned"), "harmless"], dtype=object)

    assert what_is_dangerous(joblib_bytes(array), joblib=True) == [SYSTEM]


@pytest.mark.parametrize("keep", [0.5, 0.99], ids=["half", "all-but-stop"])
def test_a_truncated_pickle_raises_a_scan_error(keep: float) -> None:
    data = pickle.dumps(fitted_pipeline())

    with pytest.raises(ScanError, match="not a pickle stream"):
        scan_bytes(data[: int(len(data) * keep)])


def test_a_truncated_joblib_array_raises_a_scan_error() -> None:
    data = joblib_bytes([np.arange(10_000, dtype=np.float64), "tail"])

    with pytest.raises(ScanError, match="ends inside a joblib array"):
        scan_bytes(data[: len(data) // 2], joblib=True)


class IndirectWrapper:
    """Builds joblib's array wrapper through copyreg, as no joblib file does."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        import copyreg

        from joblib.numpy_pickle import NumpyArrayWrapper

        return copyreg._reconstructor, (NumpyArrayWrapper, object, None)  # type: ignore[attr-defined]


def test_a_joblib_array_wrapper_built_indirectly_is_refused() -> None:
    # joblib recognises wrappers with isinstance(): one built another way would make it
    # read raw bytes where the scan reads opcodes, so the scan refuses the file.
    buffer = io.BytesIO()
    joblib.dump([IndirectWrapper()], buffer)
    buffer.seek(0)
    with pytest.raises(ScanError, match="built indirectly"):
        scan_pickle(buffer, joblib=True)
