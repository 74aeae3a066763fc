"""``pin_requirements`` turns the modules a model imports into pinned distributions."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
from pathlib import Path

import pytest

from lambdaserve.bundle.inspection import inspect_model
from lambdaserve.bundle.pins import Pin, parse_requirement, pin_requirements

SKLEARN = metadata.version("scikit-learn")
NUMPY = metadata.version("numpy")
JOBLIB = metadata.version("joblib")
MISSING = "lambdaserve_module_nobody_installed"


def test_a_module_maps_to_the_distribution_that_provides_it() -> None:
    pins = pin_requirements(["sklearn"])

    assert pins == [Pin("scikit-learn", SKLEARN, "installed", ("sklearn",))]
    assert pins[0].requirement == f"scikit-learn=={SKLEARN}"


def test_pins_are_sorted_by_distribution_and_list_their_modules() -> None:
    pins = pin_requirements(["sklearn", "numpy", "joblib"])

    assert [(p.name, p.modules) for p in pins] == [
        ("joblib", ("joblib",)),
        ("numpy", ("numpy",)),
        ("scikit-learn", ("sklearn",)),
    ]


@pytest.mark.parametrize(
    "module", ["os", "posix", "collections", "copyreg", "builtins", "__builtin__", "copy_reg", "__main__"]
)
def test_the_standard_library_and_builtins_are_not_pinned(module: str) -> None:
    assert pin_requirements([module]) == []


def test_a_version_recorded_in_the_file_wins_over_the_installed_one() -> None:
    pins = pin_requirements(["sklearn", "numpy"], recorded={"scikit-learn": "1.5.0"})

    assert pins == [
        Pin("numpy", NUMPY, "installed", ("numpy",)),
        Pin("scikit-learn", "1.5.0", "file", ("sklearn",)),
    ]


def test_a_recorded_version_matches_the_distribution_whatever_its_spelling() -> None:
    pins = pin_requirements(["sklearn"], recorded={"Scikit_Learn": "1.5.0"})

    assert [p.requirement for p in pins] == ["scikit-learn==1.5.0"]


def test_a_user_requirement_wins_over_the_file_and_the_installed_version() -> None:
    pins = pin_requirements(
        ["sklearn"], recorded={"scikit-learn": "1.5.0"}, user=["scikit-learn==1.4.2"], extra=[]
    )

    assert pins == [Pin("scikit-learn", "1.4.2", "user", ("sklearn",))]


def test_a_user_requirement_matches_the_distribution_whatever_its_spelling() -> None:
    pins = pin_requirements(["sklearn"], user=["scikit_learn==1.4.2"])

    assert len(pins) == 1
    assert (pins[0].version, pins[0].source, pins[0].modules) == ("1.4.2", "user", ("sklearn",))


def test_a_user_requirement_the_file_does_not_import_is_still_pinned() -> None:
    pins = pin_requirements(["sklearn"], user=["scipy==1.11.0"])

    assert [p.requirement for p in pins] == ["scikit-learn==" + SKLEARN, "scipy==1.11.0"]
    assert pins[1].source == "user"


def test_a_module_that_is_not_installed_is_kept_by_name_without_a_version() -> None:
    pins = pin_requirements([MISSING])

    assert pins == [Pin(MISSING, None, "unknown", (MISSING,))]
    assert pins[0].requirement == MISSING


def test_a_module_that_is_not_installed_still_gets_its_known_distribution_name() -> None:
    if importlib.util.find_spec("cv2") is not None:
        pytest.skip("OpenCV is installed here, so its version would be known")

    pins = pin_requirements(["cv2"])

    assert pins == [Pin("opencv-python", None, "unknown", ("cv2",))]


def test_a_module_that_is_not_installed_takes_the_version_the_file_records() -> None:
    pins = pin_requirements([MISSING], recorded={MISSING: "2.0"})

    assert pins == [Pin(MISSING, "2.0", "file", (MISSING,))]


def test_extra_distributions_the_format_needs_are_pinned() -> None:
    pins = pin_requirements([], extra=["joblib", "numpy"])

    assert pins == [Pin("joblib", JOBLIB, "installed", ()), Pin("numpy", NUMPY, "installed", ())]


def test_an_extra_distribution_that_the_file_also_imports_is_pinned_once() -> None:
    pins = pin_requirements(["numpy", "sklearn"], extra=["numpy"])

    assert [p.requirement for p in pins] == [f"numpy=={NUMPY}", f"scikit-learn=={SKLEARN}"]
    assert pins[0].modules == ("numpy",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scikit-learn==1.9.1", ("scikit-learn", "1.9.1")),
        ("  numpy == 2.0.0rc1 ", ("numpy", "2.0.0rc1")),
        ("torch==2.3.0+cpu", ("torch", "2.3.0+cpu")),
    ],
)
def test_a_requirement_is_split_into_name_and_version(text: str, expected: tuple[str, str]) -> None:
    assert parse_requirement(text) == expected


@pytest.mark.parametrize(
    "text",
    ["scikit-learn", "scikit-learn>=1.5", "scikit-learn==", "==1.9.1", "scikit-learn===1.9.1", "a==1; b", ""],
)
def test_a_requirement_not_of_the_form_name_equals_version_is_rejected(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"is not of the form name==version \(e\.g\. scikit-learn==1\.9\.1\)"
    ):
        parse_requirement(text)


def test_a_bad_user_requirement_stops_pinning() -> None:
    with pytest.raises(ValueError, match="name==version"):
        pin_requirements(["sklearn"], user=["scikit-learn>=1.5"])


def test_a_pin_serialises_to_a_plain_dict() -> None:
    pin = Pin("scikit-learn", "1.9.1", "file", ("sklearn",))

    assert pin.to_dict() == {
        "name": "scikit-learn",
        "version": "1.9.1",
        "source": "file",
        "modules": ["sklearn"],
    }


@pytest.mark.parametrize(
    ("fmt", "pinned"), [("pickle", True), ("joblib", True), ("skops", True), ("onnx", False)]
)
def test_a_model_fitted_on_a_dataframe_pins_pandas_which_its_file_does_not_import(
    iris_models: dict[str, Path], text_model: Path, fmt: str, pinned: bool
) -> None:
    # The handler turns each request into a DataFrame for such a model (the ONNX graph takes
    # arrays); the environment and the Lambda image install what the pins name.
    report = inspect_model(iris_models[fmt])
    assert report.named_features is pinned
    assert any(r.startswith("pandas==") for r in report.requirements) is pinned
    assert not any(r.startswith("pandas") for r in inspect_model(text_model).requirements)
