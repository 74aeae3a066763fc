"""Train a DataFrame pipeline on the iris flowers and save it in every format lambdaserve reads.

The pipeline is fitted on a pandas DataFrame, so it knows its features by name
(``feature_names_in_``) and the endpoint takes objects such as
``{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
"petal_width": 0.2}`` as well as rows of four numbers in that order.

    python examples/tabular/train.py                 # writes examples/tabular/iris.{pickle,joblib,skops,onnx}
    python examples/tabular/train.py --formats pickle joblib

The iris data ships with scikit-learn: no download. ONNX needs skl2onnx, skops needs skops.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

FORMATS = ("pickle", "joblib", "skops", "onnx")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def train() -> tuple[Pipeline, list[str]]:
    iris = load_iris(as_frame=True)
    features = iris.frame[iris.feature_names].set_axis(FEATURES, axis=1)
    species = np.array(iris.target_names)[iris.target]
    model = Pipeline(
        [
            ("scale", ColumnTransformer([("numbers", StandardScaler(), FEATURES)])),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    )
    model.fit(features, species)
    print(f"Training accuracy {model.score(features, species):.1%} on {len(features)} flowers.")
    return model, FEATURES


def save(model: Pipeline, names: list[str], fmt: str, path: Path) -> None:
    if fmt == "pickle":
        with path.open("wb") as f:
            pickle.dump(model, f)
    elif fmt == "joblib":
        import joblib

        joblib.dump(model, path, compress=3)
    elif fmt == "skops":
        import skops.io

        skops.io.dump(model, path)
    elif fmt == "onnx":
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        # One input per column, named as in the DataFrame, so objects map onto them.
        inputs = [(name, FloatTensorType([None, 1])) for name in names]
        onnx_model = to_onnx(model, initial_types=inputs, target_opset=17, options={"zipmap": True})
        path.write_bytes(onnx_model.SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-d", "--directory", type=Path, default=Path(__file__).parent)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    args = parser.parse_args()
    model, names = train()
    args.directory.mkdir(parents=True, exist_ok=True)
    for fmt in args.formats:
        path = args.directory / f"iris.{fmt}"
        save(model, names, fmt, path)
        print(f"Wrote {path}")


if __name__ == "__main__":
    main()
