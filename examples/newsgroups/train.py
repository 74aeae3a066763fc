"""Train the 20 Newsgroups topic classifier and pickle it with cloudpickle.

The model is the one the post serves: TF-IDF features and a multinomial logistic
regression, answering with topic names ("sci.space") rather than numbers. The
name <-> number mapping lives in ``TopicClassifier``, a class defined here, in the
script: cloudpickle has no module to import it from, so it pickles the class by value,
and ``lambdaserve inspect`` reports it as code carried by the file.

    python examples/newsgroups/train.py                 # writes examples/newsgroups/model.pickle
    python examples/newsgroups/train.py -o news.pickle
    python examples/newsgroups/train.py --as-in-post -o post.pickle

``--as-in-post`` builds the pipeline the way the post does instead: the classifier as a
middle step whose ``transform`` returns label numbers, then a last step that only decodes
them. That pipeline has no ``predict_proba``; lambdaserve finds the classifier inside it
for ``/predict_proba`` and ``/explain`` (see docs/tutorial.md).

Data: ``fetch_20newsgroups`` reads its cache from ``$SCIKIT_LEARN_DATA`` (or
``~/scikit_learn_data``) and downloads it there when it is missing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cloudpickle
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.datasets import fetch_20newsgroups
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder


class TopicClassifier(ClassifierMixin, BaseEstimator):
    """A text pipeline fitted on label numbers, answering with topic names."""

    def __init__(self, pipeline: Pipeline, encoder: LabelEncoder) -> None:
        self.pipeline = pipeline
        self.encoder = encoder

    def fit(self, texts: list[str], topics: np.ndarray) -> TopicClassifier:
        self.pipeline.fit(texts, self.encoder.fit_transform(topics))
        self.classes_ = self.encoder.classes_
        return self

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.encoder.inverse_transform(self.pipeline.predict(texts))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(texts)


class LabelsAsStep(TransformerMixin, BaseEstimator):
    """A classifier used as a pipeline's middle step: ``transform`` gives its predictions."""

    def __init__(self, classifier: LogisticRegression) -> None:
        self.classifier = classifier

    def fit(self, features: object, labels: np.ndarray) -> LabelsAsStep:
        self.classifier.fit(features, labels)
        return self

    def transform(self, features: object) -> np.ndarray:
        return self.classifier.predict(features)


class DecodeLabels(BaseEstimator):
    """The last step: label numbers back to topic names."""

    def __init__(self, encoder: LabelEncoder) -> None:
        self.encoder = encoder

    def fit(self, _numbers: object, topics: np.ndarray) -> DecodeLabels:
        self.encoder.fit(topics)
        return self

    def predict(self, numbers: np.ndarray) -> np.ndarray:
        return self.encoder.inverse_transform(numbers)

    def __sklearn_is_fitted__(self) -> bool:  # scikit-learn >= 1.6 asks before predict
        return hasattr(self.encoder, "classes_")


def build_post_pipeline(texts: list[str], topics: np.ndarray) -> Pipeline:
    """Fit the features and classifier on label numbers, then chain the decoder after them."""
    encoder = LabelEncoder().fit(topics)
    features = TfidfVectorizer(max_df=0.5, min_df=2, stop_words="english")
    classifier = LogisticRegression(C=100.0, max_iter=1000, random_state=42)
    Pipeline([("tfidf", features), ("lr", classifier)]).fit(texts, encoder.transform(topics))
    steps = [("tfidf", features), ("ilr", LabelsAsStep(classifier)), ("inv_le", DecodeLabels(encoder))]
    return Pipeline(steps)


def build_model() -> TopicClassifier:
    features = TfidfVectorizer(max_df=0.5, min_df=2, stop_words="english")
    classifier = LogisticRegression(C=100.0, max_iter=1000, random_state=42)
    return TopicClassifier(Pipeline([("tfidf", features), ("lr", classifier)]), LabelEncoder())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("model.pickle"))
    parser.add_argument(
        "--as-in-post", action="store_true", help="the post's pipeline: a label decoder as its last step"
    )
    args = parser.parse_args()

    train = fetch_20newsgroups(subset="train")
    test = fetch_20newsgroups(subset="test")
    topics = np.array(train.target_names)
    print(f"Training on {len(train.data)} posts, testing on {len(test.data)}.", flush=True)

    started = time.perf_counter()
    if args.as_in_post:
        model = build_post_pipeline(train.data, topics[train.target])
    else:
        model = build_model().fit(train.data, topics[train.target])
    accuracy = float(np.mean(model.predict(test.data) == topics[test.target]))
    print(f"Trained in {time.perf_counter() - started:.1f} s; test accuracy {accuracy:.1%}.")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("wb") as f:
        cloudpickle.dump(model, f)
    print(f"Wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB).")


if __name__ == "__main__":
    main()
