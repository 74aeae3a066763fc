"""Train the 20 Newsgroups topic classifier and pickle it with cloudpickle.

The model is the one the post serves: TF-IDF features and a multinomial logistic
regression, answering with topic names ("sci.space") rather than numbers. The
name <-> number mapping lives in ``TopicClassifier``, a class defined here, in the
script: cloudpickle has no module to import it from, so it pickles the class by value,
and ``lambdaserve inspect`` reports it as code carried by the file.

    python examples/newsgroups/train.py                 # writes examples/newsgroups/model.pickle
    python examples/newsgroups/train.py -o news.pickle

Data: ``fetch_20newsgroups`` reads its cache from ``$SCIKIT_LEARN_DATA`` (or
``~/scikit_learn_data``) and downloads it there when it is missing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cloudpickle
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
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


def build_model() -> TopicClassifier:
    features = TfidfVectorizer(max_df=0.5, min_df=2, stop_words="english")
    classifier = LogisticRegression(C=100.0, max_iter=1000, random_state=42)
    return TopicClassifier(Pipeline([("tfidf", features), ("lr", classifier)]), LabelEncoder())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("model.pickle"))
    args = parser.parse_args()

    train = fetch_20newsgroups(subset="train")
    test = fetch_20newsgroups(subset="test")
    topics = np.array(train.target_names)
    print(f"Training on {len(train.data)} posts, testing on {len(test.data)}.", flush=True)

    started = time.perf_counter()
    model = build_model().fit(train.data, topics[train.target])
    accuracy = float(np.mean(model.predict(test.data) == topics[test.target]))
    print(f"Trained in {time.perf_counter() - started:.1f} s; test accuracy {accuracy:.1%}.")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("wb") as f:
        cloudpickle.dump(model, f)
    print(f"Wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB).")


if __name__ == "__main__":
    main()
