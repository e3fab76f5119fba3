"""Threshold rules on raw anomaly scores.

Three rules are unsupervised: they see only the scores of *normal* validation films (no labels, no
anomalies), so they work where the validation split holds normal films alone. The fourth,
:func:`f1_oracle_threshold`, picks the best-F1 cut on labelled test scores; it is an oracle, an upper
reference, never a deployable rule.

Every rule flags an image as anomalous when ``score >= threshold`` (the scikit-learn convention).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr
from sklearn.metrics import precision_recall_curve
from sklearn.mixture import GaussianMixture

try:  # scikit-image arrives with anomalib; the numpy version below computes the same cut without it.
    from skimage.filters import threshold_otsu as _skimage_otsu
except ImportError:  # pragma: no cover - depends on the environment
    _skimage_otsu = None

OTSU_BINS = 256

EMPTY_SCORES_MSG = (
    "no normal validation scores: the validation split is empty; "
    "raise data.split.val_fraction (e.g. 0.15) or add normal films"
)


def check_scores(scores: np.ndarray, name: str = "normal validation scores") -> np.ndarray:
    """Return ``scores`` as a finite 1-D float64 array or raise naming the problem.

    Args:
        scores: Raw anomaly scores, any shape that flattens to 1-D.
        name: What the scores are, used in error messages.

    Returns:
        The scores, flattened, as float64.

    Raises:
        ValueError: If there are no scores or any score is NaN or infinite.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        msg = EMPTY_SCORES_MSG if name == "normal validation scores" else f"no {name} given: pass a non-empty array"
        raise ValueError(msg)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        msg = (
            f"{name} contain {bad.size} NaN/inf value(s) (first at index {bad[0]}: {values[bad[0]]}); "
            "the detector produced non-finite scores: check the model output before thresholding"
        )
        raise ValueError(msg)
    return values


def otsu_threshold(normal_scores: np.ndarray) -> float:
    """Otsu's cut on a 256-bin histogram of the normal validation scores.

    Otsu splits a sample into two classes maximising the between-class variance. On normal scores alone the
    sample is usually unimodal, so the cut falls near the middle of the normal distribution and flags a large
    share of normal films: it is a weak default, kept as a reference. Uses
    ``skimage.filters.threshold_otsu`` when scikit-image is installed, else an identical numpy computation.

    Args:
        normal_scores: Raw anomaly scores of normal validation films.

    Returns:
        The threshold (a histogram bin centre; the common value if all scores are equal).

    Example:
        >>> scores = np.r_[np.zeros(50), np.full(50, 10.0)]
        >>> 0.0 < otsu_threshold(scores) < 10.0
        True
    """
    values = check_scores(normal_scores)
    if np.all(values == values[0]):
        return float(values[0])
    if _skimage_otsu is not None:
        return float(_skimage_otsu(values, nbins=OTSU_BINS))
    return _numpy_otsu(values)


def _numpy_otsu(values: np.ndarray, nbins: int = OTSU_BINS) -> float:
    """Otsu's method as in scikit-image: argmax of the between-class variance over bin centres."""
    counts, edges = np.histogram(values, bins=nbins, range=(values.min(), values.max()))
    centers = (edges[:-1] + edges[1:]) / 2
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean1 = np.cumsum(counts * centers) / weight1
        mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
        variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[np.nanargmax(variance12)])


def percentile_threshold(normal_scores: np.ndarray, q: float = 95.0, conformal: bool = True) -> float:
    """A cut that flags about ``1 - q/100`` of new normal films, from the normal validation scores.

    ``conformal`` (default): the ``ceil((n + 1) q / 100)``-th smallest score, the split-conformal quantile. For new
    normal films exchangeable with the ``n`` validation films the expected FPR is ``(n + 1 - k) / (n + 1)``: at most
    the nominal rate and within ``1 / (n + 1)`` of it. The linearly interpolated percentile (``conformal=False``)
    sits between the ``q (n - 1) / 100``-th order statistics instead, which overshoots on small calibration sets:
    7.0% expected FPR at a nominal 5% with 44 films. Fewer than ``100 / (100 - q) - 1`` films cannot support the
    cut; the maximum is then used (FPR about ``1 / (n + 1)``, above nominal only when ``n`` is tiny).

    Args:
        normal_scores: Raw anomaly scores of normal validation films.
        q: Percentile in [0, 100].
        conformal: Use the split-conformal order statistic (else numpy's linear interpolation).

    Returns:
        The threshold.

    Raises:
        ValueError: If ``q`` is outside [0, 100].

    Example:
        >>> percentile_threshold(np.arange(101.0), q=95.0), percentile_threshold(np.arange(101.0), 95.0, False)
        (96.0, 95.0)
    """
    if not 0.0 <= q <= 100.0:
        msg = f"percentile q={q} is outside [0, 100]; pass e.g. q=95.0 for a 5% false-positive target"
        raise ValueError(msg)
    values = check_scores(normal_scores)
    if not conformal:
        return float(np.percentile(values, q))
    rank = math.ceil((values.size + 1) * q / 100.0 - 1e-9)  # 1-based; the tolerance absorbs float error
    return float(np.sort(values)[min(max(rank, 1), values.size) - 1])


def gmm_threshold(normal_scores: np.ndarray, n_components: int = 2, seed: int = 0, tail: float = 0.01) -> float:
    """Upper ``tail`` quantile of a Gaussian mixture fitted to the normal validation scores.

    Rule: fit a ``n_components`` 1-D Gaussian mixture (scikit-learn, EM, fixed ``seed``) to the normal scores
    and return the score ``t`` where the fitted mixture's survival function equals ``tail``,
    ``sum_k w_k * (1 - Phi((t - mu_k) / sigma_k)) = tail``. With ``tail=0.01`` this is the 99th percentile of
    the smoothed normal-score distribution: a parametric estimate of the cut with a 1% false-positive rate,
    less noisy than the empirical percentile on small validation sets and able to extrapolate beyond the
    largest observed score. Extra components absorb skew or a second mode of normal scores (for instance AP
    and PA films). Scores are standardised before fitting so the EM regulariser is scale-free. No label is
    used.

    Args:
        normal_scores: Raw anomaly scores of normal validation films.
        n_components: Number of mixture components (at most the number of scores).
        seed: Random state of the EM initialisation.
        tail: Target false-positive rate in (0, 1).

    Returns:
        The threshold.

    Raises:
        ValueError: On a bad ``tail``/``n_components``, or if all scores are equal (no spread to fit).
    """
    values = check_scores(normal_scores)
    if not 0.0 < tail < 1.0:
        msg = f"gmm tail={tail} must lie in (0, 1); pass e.g. tail=0.01 for a 1% false-positive target"
        raise ValueError(msg)
    if not 1 <= n_components <= values.size:
        msg = f"gmm n_components={n_components} must be in [1, {values.size}] (the number of normal scores)"
        raise ValueError(msg)
    center, scale = values.mean(), values.std()
    if scale == 0.0:
        msg = f"all {values.size} normal scores equal {center}; a GMM needs spread: use method='percentile'"
        raise ValueError(msg)
    standardised = ((values - center) / scale)[:, None]
    gmm = GaussianMixture(n_components=n_components, random_state=seed).fit(standardised)
    weights, means = gmm.weights_, gmm.means_.ravel()
    sigmas = np.sqrt(gmm.covariances_.ravel())

    def excess_tail(t: float) -> float:
        return float(np.sum(weights * ndtr((means - t) / sigmas)) - tail)

    upper = float(np.max(means + 10.0 * sigmas))
    lower = float(np.min(means - 10.0 * sigmas))
    return float(center + scale * brentq(excess_tail, lower, upper, xtol=1e-10))


def f1_oracle_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """ORACLE: the cut that maximises F1 on labelled scores (uses the test labels).

    Searches every distinct score as a cut (``precision_recall_curve``); ties in F1 keep the lowest cut.
    Report it only as an upper reference for the unsupervised rules.

    Args:
        scores: Raw anomaly scores.
        labels: 1 for anomalous, 0 for normal; both classes must be present.

    Returns:
        The best-F1 threshold.

    Raises:
        ValueError: If shapes differ, labels are not 0/1, or a class is missing.

    Example:
        >>> f1_oracle_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
        0.8
    """
    values = check_scores(scores, name="test scores")
    y = np.asarray(labels).ravel()
    if y.shape != values.shape:
        msg = f"labels have shape {y.shape} but scores have {values.shape}; pass one label per score"
        raise ValueError(msg)
    if not np.isin(y, (0, 1)).all() or np.unique(y).size < 2:
        msg = f"f1_oracle needs 0/1 labels with both classes, got values {np.unique(y).tolist()}"
        raise ValueError(msg)
    precision, recall, cuts = precision_recall_curve(y, values)
    precision, recall = precision[:-1], recall[:-1]  # the last point (P=1, R=0) has no cut
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(cuts[np.argmax(f1)])
