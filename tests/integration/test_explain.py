"""``/explain`` and the probabilities behind it, from the model file to the served route.

The post's pipeline (examples/newsgroups/train.py --as-in-post) ends with a label decoder, so
it has no predict_proba: lambdaserve must find the classifier inside it, check it on the
sample, and then answer /predict_proba and /explain with it. Tabular models need a reference
sample's statistics (--reference); a model without probabilities is explained on its hard
predictions. Bounds and errors follow /predict's contract.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from gateway_support import Served, ServerPool
from sample_texts import TEXTS, TOPICS

from lambdaserve.functions.package import package_model
from lambdaserve.runtime.handler import PredictionService
from lambdaserve.runtime.lambda_init import LocalContext
from lambdaserve.runtime.models import EstimatorModel
from lambdaserve.store import Store

LAMBDASERVE = Path(sys.executable).with_name("lambdaserve")
ROOT = Path(__file__).resolve().parents[2]
ORBIT = "nasa rocket launch orbit but the church prayed to god"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def example() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "examples" / "newsgroups" / "train.py"))


@pytest.fixture(scope="module")
def post_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The post's pipeline shape, trained on the handful of test sentences."""
    model = example()["build_post_pipeline"](TEXTS, np.array(TOPICS))
    path = tmp_path_factory.mktemp("post") / "post.pickle"
    with path.open("wb") as f:
        cloudpickle.dump(model, f)
    return path


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris training rows with their label column, as a data scientist has them."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    path = tmp_path_factory.mktemp("reference") / "iris.csv"
    lines = [",".join([*FEATURES, "species"])]
    for row, target in zip(iris.data, iris.target, strict=True):
        lines.append(",".join([*(f"{v:.1f}" for v in row), str(iris.target_names[target])]))
    path.write_text("\n".join(lines) + "\n")
    return path


# -- probabilities found inside the pipeline ---------------------------------------------
def test_the_posts_pipeline_answers_probabilities_from_its_inner_classifier(
    post_model: Path, tmp_path: Path
) -> None:
    # GIVEN the post's pipeline, which has no predict_proba of its own
    with post_model.open("rb") as f:
        assert not hasattr(cloudpickle.load(f), "predict_proba")
    # WHEN it is packaged with a sample
    manifest, _ = package_model(
        post_model, output=tmp_path / "b", sample=["the rocket reached orbit"], env_mode="local"
    )
    # THEN the wrapped LogisticRegression was found, checked, and its classes named by the decoder
    assert manifest.has_proba
    assert manifest.probabilities == {
        "source": "pipeline step",
        "path": "ilr.classifier",
        "found": "LogisticRegression at ilr.classifier, classes named by step 'inv_le'",
        "checked": True,
    }
    assert manifest.classes == ["religion", "space"]
    [probabilities] = manifest.sample_proba
    assert max(probabilities, key=probabilities.get) == manifest.sample_output[0] == "space"


class WrongNames:
    """A decoder whose predict does not match the order of the classifier's classes."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def predict(self, numbers: Any) -> Any:
        return np.array([self.names[int(n)] for n in numbers])


def test_a_classifier_whose_argmax_disagrees_with_predict_is_not_used() -> None:
    # GIVEN a pipeline whose decoder maps numbers to names other than by the classifier's order
    ex = example()
    pipe = ex["build_post_pipeline"](TEXTS, np.array(TOPICS))
    decoder = pipe.steps[-1][1]
    pipe.steps[-1] = ("inv_le", decoder)
    model = EstimatorModel(pipe)
    assert model.route is not None
    model.route.classes = list(reversed(model.route.classes))  # as a decoder naming them wrongly would
    # WHEN it is checked on a sample THEN it disagrees and the model keeps no probabilities
    assert not model.check_route(["the rocket reached orbit", "a prayer in church"])
    assert not model.has_proba
    assert model.probability_source()["checked"] is False


def test_without_a_sample_the_inner_classifier_is_found_but_not_used(
    post_model: Path, tmp_path: Path
) -> None:
    manifest, _ = package_model(post_model, output=tmp_path / "b", env_mode="local")
    assert not manifest.has_proba
    assert manifest.probabilities is not None
    assert manifest.probabilities["checked"] is False


# -- the handler's route -------------------------------------------------------------------
def service_for(model: Any) -> PredictionService:
    return PredictionService(EstimatorModel(model), "1")


def explain_event(body: Any) -> dict[str, Any]:
    return {
        "resource": "/m/explain",
        "path": "/test/m/explain",
        "httpMethod": "POST",
        "body": json.dumps(body),
    }


def far_context() -> LocalContext:
    import time

    return LocalContext("req-1", int(time.time() * 1000) + 60_000)


@pytest.fixture(scope="module")
def post_service() -> PredictionService:
    service = service_for(example()["build_post_pipeline"](TEXTS, np.array(TOPICS)))
    service.warm_up(json.dumps(["the rocket reached orbit"]))  # checks the inner classifier
    return service


def answer(service: PredictionService, body: Any, context: Any = None) -> tuple[int, Any]:
    response = service.handle(explain_event(body), context or far_context())
    return response["statusCode"], json.loads(response["body"])


def test_explain_answers_the_label_its_probability_and_weighted_words(
    post_service: PredictionService,
) -> None:
    status, [explained] = answer(post_service, {"instances": [ORBIT], "top_labels": 2})
    assert status == 200
    assert explained["label"] == "space"
    assert [e["label"] for e in explained["explanations"]] == ["space", "religion"]
    space = explained["explanations"][0]
    weights = dict(space["weights"])
    assert len(weights) == 6
    assert set(weights) <= set(ORBIT.split())
    assert weights["rocket"] > 0 > weights["god"]  # the space words speak for space
    assert {"intercept", "score", "local_prediction", "probability"} <= set(space)
    assert explained["num_samples"] == 1000
    assert "note" not in explained
    # the same question, the same answer (random_state 0 by default)
    assert answer(post_service, {"instances": [ORBIT], "top_labels": 2}) == (200, [explained])


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"instances": [ORBIT], "num_samples": 5}, "num_samples"),
        ({"instances": [ORBIT], "num_features": 0}, "num_features"),
        ({"instances": [ORBIT], "labels": ["nope"]}, "religion, space"),
        ({"instances": [ORBIT], "labels": ["space"], "top_labels": 2}, "not both"),
        ({"instances": [ORBIT], "colour": "red"}, "Unknown explain option"),
        ({"instances": [ORBIT], "labels": None}, "leave the option out"),
        ({"instances": [ORBIT] * 11}, "at most 10"),
        ({"instances": ["   "]}, "no words"),
    ],
)
def test_explain_refuses_what_it_cannot_do_with_a_400_that_says_why(
    post_service: PredictionService, body: Any, mentions: str
) -> None:
    status, error = answer(post_service, body)
    assert status in (400, 422), error
    assert mentions in error["error"]


def test_an_explanation_that_cannot_end_in_time_is_a_504_naming_fewer_samples(
    post_service: PredictionService,
) -> None:
    # GIVEN no time left before the function's timeout
    import time

    context = LocalContext("req-2", int(time.time() * 1000))
    status, error = answer(post_service, {"instances": [ORBIT]}, context)
    assert status == 504
    assert "num_samples" in error["error"]


def test_explain_measures_its_pace_on_the_injected_clock(post_service: PredictionService) -> None:
    from lambdaserve.runtime.explaining import ExplainOptions, ExplainTimeout

    # GIVEN a clock that moves 1 s per batch of predictions, and 28 s of budget
    ticks = iter(range(1000))
    clock: Any = lambda: float(next(ticks))  # noqa: E731
    with pytest.raises(ExplainTimeout) as raised:
        post_service.explainer.explain([ORBIT], ExplainOptions(num_samples=10_000), 60.0, clock)
    # THEN the answer names the samples that fit the budget at that pace
    assert raised.value.status == 504
    assert '"num_samples": ' in raised.value.message


def test_a_model_without_probabilities_is_explained_on_its_hard_predictions() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    service = service_for(make_pipeline(TfidfVectorizer(), LinearSVC()).fit(TEXTS, TOPICS))
    status, [explained] = answer(service, [ORBIT])
    assert status == 200
    assert explained["label"] in ("space", "religion")
    assert "one-hot" in explained["note"]
    assert explained["explanations"][0]["weights"]


def test_a_tabular_model_without_a_reference_is_told_how_to_add_one(iris_estimator: Any) -> None:
    status, error = answer(service_for(iris_estimator), [SETOSA])
    assert status == 400
    assert "--reference" in error["error"]


def test_explanations_are_never_batched_with_predictions() -> None:
    from lambdaserve.functions.function import Function, _Pending
    from lambdaserve.functions.settings import FunctionSettings
    from lambdaserve.runtime.apigw import compact

    function = object.__new__(Function)
    function.settings = FunctionSettings()
    function.queue = __import__("collections").deque(
        _Pending(compact("[]", model="m", stage="s", route=route), str(i), None, 2, route == "explain")  # type: ignore[arg-type]
        for i, route in enumerate(["predict", "predict", "explain", "predict"])
    )
    assert [p.request_id for p in function._take()] == ["0", "1"]
    assert [p.request_id for p in function._take()] == ["2"]
    assert [p.request_id for p in function._take()] == ["3"]


# -- package --reference, the CLI and the served route ---------------------------------------
def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAMBDASERVE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


@pytest.fixture(scope="module")
def iris_reference_bundle(
    iris_models: dict[str, Path], iris_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("iris-ref") / "bundle"
    done = run_cli(
        "package", str(iris_models["pickle"]), "--sample", json.dumps([SETOSA]),
        "--reference", str(iris_csv), "-o", str(out), "--env", "local", "--json",
        cwd=out.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_package_reference_keeps_statistics_not_rows(iris_reference_bundle: Path, iris_csv: Path) -> None:
    manifest = json.loads((iris_reference_bundle / "lambdaserve.json").read_text())
    reference = manifest["reference"]
    assert reference["n_rows"] == 150
    assert list(reference["feature_names"]) == FEATURES  # the label column left out
    # no training row travels: none of the CSV's lines is in the manifest
    text = json.dumps(reference)
    assert not any(line in text for line in iris_csv.read_text().splitlines()[1:])


def test_the_cli_explains_a_tabular_bundle_with_its_reference(
    iris_reference_bundle: Path, tmp_path: Path
) -> None:
    done = run_cli(
        "explain", str(iris_reference_bundle), "--data", json.dumps([SETOSA]), "--num-features", "4",
        "--env", "local", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [explained] = json.loads(done.stdout)["explanations"]
    assert explained["label"] == "setosa"
    described = " ".join(f for f, _ in explained["explanations"][0]["weights"])
    assert "petal_length" in described or "petal_width" in described


def test_the_cli_writes_a_page_with_the_words_highlighted(post_model: Path, tmp_path: Path) -> None:
    done = run_cli(
        "explain", str(post_model), "--data", json.dumps([ORBIT]), "--html", "why.html", "--env", "local",
        cwd=tmp_path,
    )  # fmt: skip
    # a model file without a sample has no checked probabilities: explained on hard predictions
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "why.html").read_text()
    assert "<mark" in page
    assert "rocket" in page


@pytest.fixture(scope="module")
def served(
    post_model: Path, iris_reference_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("explain-served")
    post_bundle = root / "post"
    manifest, _ = package_model(
        post_model, output=post_bundle, sample=["the rocket reached orbit"], env_mode="local"
    )
    store = Store(root / "state")
    store.add_version("post", manifest.to_dict(), post_bundle / manifest.model_file)
    iris_manifest = json.loads((iris_reference_bundle / "lambdaserve.json").read_text())
    store.add_version("iris", iris_manifest, iris_reference_bundle / iris_manifest["model_file"])
    for name in ("post", "iris"):
        store.set_alias(name, "test", 1)
    store.close()
    pool = ServerPool()
    try:
        yield pool.start(root / "state")
    finally:
        pool.stop_all()


def test_the_served_routes_explain_text_and_tabular_models(served: Served) -> None:
    proba = served.post("/test/post/predict_proba", json.dumps([ORBIT]))
    assert proba.status_code == 200
    assert set(proba.json()[0]) == {"religion", "space"}
    text = served.post("/test/post/explain", json.dumps({"instances": [ORBIT], "num_samples": 500}))
    assert text.status_code == 200, text.text
    assert text.json()[0]["num_samples"] == 500
    rows = served.post("/test/iris/explain", json.dumps([SETOSA]))
    assert rows.status_code == 200, rows.text
    assert rows.json()[0]["label"] == "setosa"


def test_explain_takes_the_same_key_as_predict(served: Served) -> None:
    import httpx

    response = httpx.post(f"{served.base}/test/post/explain", content=json.dumps([ORBIT]), timeout=30)
    assert (response.status_code, response.json()) == (403, {"message": "Forbidden"})


# -- agreement with the lime package on the post's own example ------------------------------
@pytest.mark.slow
def test_the_posts_example_agrees_with_the_lime_package(tmp_path: Path) -> None:
    """The post's model, trained on 20 Newsgroups, explained the post's way: LimeTextExplainer
    on the test set's third post, 6 features, top 2 labels. Same seed: the same words, signs
    and weights as lime's."""
    lime_text = pytest.importorskip("lime.lime_text")
    from sklearn.datasets import fetch_20newsgroups

    train, test = fetch_20newsgroups(subset="train"), fetch_20newsgroups(subset="test")
    topics = np.array(train.target_names)
    pipe = example()["build_post_pipeline"](train.data, topics[train.target])
    path = tmp_path / "post.pickle"
    with path.open("wb") as f:
        cloudpickle.dump(pipe, f)
    with path.open("rb") as f:
        from lambdaserve.runtime.allowlist import restricted_load

        loaded = restricted_load(f, [])
    service = PredictionService(EstimatorModel(loaded), "1")
    post = test.data[2]
    service.warm_up(json.dumps([post]))
    assert service.model.has_proba
    status, [ours] = answer(
        service,
        {"instances": [post], "num_features": 6, "top_labels": 2, "num_samples": 1000, "random_state": 42},
    )
    assert status == 200
    route = service.model.route
    assert route is not None
    explainer = lime_text.LimeTextExplainer(class_names=list(topics), random_state=42)
    theirs = explainer.explain_instance(
        post, route.predict_proba, num_features=6, top_labels=2, num_samples=1000
    )
    assert [e["label"] for e in ours["explanations"]] == [topics[i] for i in theirs.available_labels()]
    for explained, index in zip(ours["explanations"], theirs.available_labels(), strict=True):
        expected = theirs.as_list(label=index)
        assert [w for w, _ in explained["weights"]] == [w for w, _ in expected]
        assert [np.sign(v) for _, v in explained["weights"]] == [np.sign(v) for _, v in expected]
        np.testing.assert_allclose([v for _, v in explained["weights"]], [v for _, v in expected], atol=1e-6)
    # the post reads this post as alt.atheism
    assert ours["label"] == "alt.atheism"


def test_pickle_of_the_post_shape_loads_under_the_allow_list(post_model: Path) -> None:
    from lambdaserve.runtime.allowlist import restricted_load

    with post_model.open("rb") as f:
        model = restricted_load(f, [])
    assert EstimatorModel(model).route is not None


def test_a_reference_with_string_categories_is_kept_for_drift_and_explain_says_why_not(
    tmp_path: Path,
) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    # GIVEN a model fitted on a DataFrame with a string category, and a reference CSV of it
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"colour": rng.choice(["red", "blue", "green"], 200), "size": rng.normal(5, 1, 200)})
    labels = np.where(frame["size"] > 5, "big", "small")
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough"), LogisticRegression()
    ).fit(frame, labels)
    path = tmp_path / "shapes.pickle"
    path.write_bytes(__import__("pickle").dumps(model))
    reference = tmp_path / "shapes.csv"
    frame.assign(label=labels).to_csv(reference, index=False)
    # WHEN it is packaged with that reference
    manifest, bundle = package_model(
        path,
        output=tmp_path / "b",
        sample=[{"colour": "red", "size": 6.0}],
        env_mode="local",
        reference=reference,
    )
    # THEN drift has the category's shares, and explain says LIME needs numbers
    summary = manifest.reference
    assert summary is not None
    kinds = {f["name"]: f["type"] for f in summary["drift"]["features"]}
    assert kinds == {"colour": "categorical", "size": "numeric"}
    done = run_cli(
        "explain", str(bundle), "--data", '[{"colour": "red", "size": 6.0}]', "--env", "local", cwd=tmp_path
    )
    assert done.returncode == 1
    assert "needs numbers for every feature" in " ".join(done.stderr.split())
