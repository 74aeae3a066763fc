"""The allow-list admits what real models are made of: every scikit-learn estimator, in every form.

Each estimator scikit-learn lists (``all_estimators``) that fits with its defaults is fitted
on a small problem, saved with pickle, cloudpickle and joblib, then scanned (no finding) and
loaded with the restricted loaders (nothing refused). So are pipelines fitted on DataFrames,
DataFrames themselves, and numpy's random generators. A refusal here is a false positive of
the allow-list: a part of a model it should admit.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils import all_estimators

from lambdaserve.bundle.pickle_scan import scan_pickle
from lambdaserve.runtime.allowlist import restricted_joblib_load, restricted_load

# Deprecated estimators warn when they are pickled or loaded: still models people have.
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

X_CLASSES, Y_CLASSES = make_classification(n_samples=60, n_features=6, n_informative=3, random_state=0)
X_VALUES, Y_VALUES = make_regression(n_samples=60, n_features=6, random_state=0)


def fitted_estimators() -> dict[str, Any]:
    fitted: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, estimator_class in all_estimators():
            try:
                estimator = estimator_class()
            except TypeError:
                continue  # needs arguments (meta-estimators)
            for x, y in ((X_CLASSES, Y_CLASSES), (X_VALUES, Y_VALUES)):
                for arguments in ((np.abs(x), y), (np.abs(x),)):
                    try:
                        fitted[name] = estimator.fit(*arguments)
                        break
                    except Exception:  # a problem this estimator does not take: try the next
                        continue
                if name in fitted:
                    break
    frame = pd.DataFrame(np.abs(X_CLASSES), columns=[f"f{i}" for i in range(6)])
    mixed = frame.assign(colour=["red", "green", "blue"] * 20)
    columns = ColumnTransformer(
        [("numbers", StandardScaler(), list(frame.columns)), ("colours", OneHotEncoder(), ["colour"])]
    )
    fitted["pipeline-on-a-dataframe"] = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        frame, Y_CLASSES
    )
    fitted["column-transformer"] = make_pipeline(columns, LogisticRegression()).fit(mixed, Y_CLASSES)
    fitted["function-and-score-function"] = make_pipeline(
        FunctionTransformer(np.log1p), SelectKBest(chi2, k=3), LogisticRegression()
    ).fit(np.abs(X_CLASSES), Y_CLASSES)
    fitted["dataframe"] = mixed
    fitted["generator"] = np.random.default_rng(0)
    fitted["random-state"] = np.random.RandomState(0)
    return fitted


FITTED = fitted_estimators()


def test_the_corpus_holds_the_estimators_models_are_made_of() -> None:
    assert len(FITTED) > 150
    for name in ("RandomForestClassifier", "LogisticRegression", "HistGradientBoostingRegressor", "KMeans"):
        assert name in FITTED


@pytest.mark.parametrize("dump", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_every_estimator_scans_clean_and_loads_restricted(dump: Any) -> None:
    refused = {}
    for name, estimator in FITTED.items():
        data = dump(estimator)
        findings = scan_pickle(io.BytesIO(data)).dangerous
        if findings:
            refused[name] = [f.what for f in findings]
            continue
        try:
            restricted_load(io.BytesIO(data))
        except pickle.UnpicklingError as exc:
            refused[name] = [str(exc)]
    assert refused == {}


def test_every_estimator_saved_with_joblib_scans_clean_and_loads_restricted(tmp_path: Path) -> None:
    refused = {}
    for name, estimator in FITTED.items():
        path = tmp_path / f"{name}.joblib"
        joblib.dump(estimator, path)
        with path.open("rb") as stream:
            findings = scan_pickle(stream, joblib=True).dangerous
        if findings:
            refused[name] = [f.what for f in findings]
            continue
        try:
            restricted_joblib_load(path)
        except pickle.UnpicklingError as exc:
            refused[name] = [str(exc)]
    assert refused == {}
