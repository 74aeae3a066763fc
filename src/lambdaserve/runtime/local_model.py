"""lime's local model: a weighted ridge regression and its feature selection, in numpy.

``lime_base.LimeBase.explain_instance_with_data`` fits scikit-learn's ``Ridge`` on the perturbed
samples, weighted by their kernel proximity; runtime/ has no scikit-learn, so the same fit is
written here in closed form. Results agree with sklearn's to float rounding; exact ties (two
words present in exactly the same samples) may come out in either order.

Constraints: standard library at import time, numpy in the methods (``runtime/`` rules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float64]


class WeightedRidge:
    """scikit-learn's ``Ridge(alpha, fit_intercept=True)`` with ``sample_weight``, in closed form.

    As sklearn does: centre by the weighted means, scale rows by the root of their weight, solve
    (X'X + alpha I) b = X'y by Cholesky, and fall back to the SVD when X'X + alpha I is singular
    (forward selection fits with alpha 0). The intercept is mean(y) - mean(X) b.
    """

    def __init__(self, data: Array, weights: Array) -> None:
        np = _numpy()
        self.data = data
        self.weights = weights
        self.means = np.average(data, axis=0, weights=weights)
        self.root_weights = np.sqrt(weights)
        self.scaled = (data - self.means) * self.root_weights[:, np.newaxis]

    def fit(self, y: Array, features: list[int], alpha: float) -> tuple[Array, float]:
        np = _numpy()
        y_mean = float(np.average(y, weights=self.weights))
        x = self.scaled[:, features]
        target = (y - y_mean) * self.root_weights
        gram = x.T @ x
        gram[np.diag_indices_from(gram)] += alpha
        try:
            np.linalg.cholesky(gram)
            coef = np.linalg.solve(gram, x.T @ target)
        except np.linalg.LinAlgError:
            u, s, vt = np.linalg.svd(x, full_matrices=False)
            kept = s > 1e-15
            shrink = np.zeros_like(s)
            shrink[kept] = s[kept] / (s[kept] ** 2 + alpha)
            coef = vt.T @ (shrink * (u.T @ target))
        return coef, y_mean - float(self.means[features] @ coef)

    def score(self, y: Array, predicted: Array) -> float:
        """sklearn's weighted r2_score, where a constant y scores 1.0 if fitted exactly, else 0.0."""
        np = _numpy()
        residual = float((self.weights * (y - predicted) ** 2).sum())
        spread = float((self.weights * (y - np.average(y, weights=self.weights)) ** 2).sum())
        if spread == 0.0:
            return 1.0 if residual == 0.0 else 0.0
        return 1.0 - residual / spread

    def select(self, y: Array, num_features: int) -> list[int]:
        """lime's feature_selection='auto': forward selection up to 6 features, else the largest
        |coefficient x instance value| of a ridge (alpha 0.01) on every feature."""
        n_features = self.data.shape[1]
        if num_features > 6:
            coef, _ = self.fit(y, list(range(n_features)), alpha=0.01)
            weighted = (coef * self.data[0]).tolist()
            return sorted(range(n_features), key=lambda f: abs(weighted[f]), reverse=True)[:num_features]
        used: list[int] = []
        for _ in range(min(num_features, n_features)):
            best, best_score = 0, -100000000.0
            for feature in range(n_features):
                if feature in used:
                    continue
                candidate = [*used, feature]
                coef, intercept = self.fit(y, candidate, alpha=0.0)
                score = self.score(y, self.data[:, candidate] @ coef + intercept)
                if score > best_score:
                    best, best_score = feature, score
            used.append(best)
        return used


def _numpy() -> Any:
    import numpy

    return numpy
