"""Routers learned from routing logs: they predict how well each model answers a query.

* :class:`KnnRouter`: similarity-weighted nearest neighbours over query embeddings.
* :class:`MlpRouter`: a one-hidden-layer network (numpy, Adam) with a score head per model
  and a task head.
* :class:`MfRouter`: matrix factorisation — query and model latent factors (the MLP's
  training with a linear, low-rank hidden layer).

Both blend their per-query estimate with the **task prior** (each model's mean score on the
query's task in the log): the task is taken from the caller when known, else inferred (the
neighbours' tasks, or the task head). On LLMRouter's logs the blend beats either part alone
(see ``docs/routing.md``).

Saved routers are one ``.npz`` file (numpy's zip of arrays, loaded with
``allow_pickle=False``: no code is ever unpickled) whose ``header`` array holds UTF-8 JSON::

    {"format": "polyfuse-router", "version": 1, "kind": "knn" | "mlp" | "mf",
     "models": [...], "tasks": [...], "embedder": "wordllama:l2_supercat:256",
     "params": {...}, "prices": {model: [input, output] $/M tokens},
     "output_tokens": 256, "ranges": {...}, "trained": {"queries": N, "seconds": s},
     "calibration": {"tolerance": ε, "params": {...}, "validation": {...}} (optional)}

and whose other arrays are the learned numbers (documented per router class).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..errors import InvalidRequestError
from .embedders import Matrix
from .loaders import DEFAULT_OUTPUT_TOKENS, ModelPrice
from .scenarios import Range, TaskRanges, task_ranges
from .table import FloatMatrix, RoutingTable

__all__ = [
    "ROUTER_FORMAT_VERSION",
    "ROUTER_KINDS",
    "KnnRouter",
    "MfRouter",
    "MlpRouter",
    "Router",
    "load_router",
]

ROUTER_FORMAT_VERSION = 1
"""The version of the saved-router layout; :func:`load_router` refuses newer files."""

IntArray = npt.NDArray[np.int64]


class Router(ABC):
    """Predicts each model's expected score on a query from its embedding (and task).

    Subclasses implement :meth:`_fit` and :meth:`_predict_local`; the task prior, the
    normalisation ranges, prices and saving are shared.
    """

    kind: ClassVar[str]
    prediction_grid: ClassVar[dict[str, tuple[float, ...]]] = {"prior_weight": (0.3, 0.5, 0.7)}
    """Prediction-time settings (attributes) that calibration may choose, and their values."""

    def __init__(self, *, prior_weight: float = 0.5) -> None:
        if not 0.0 <= prior_weight <= 1.0:
            raise InvalidRequestError(f"prior_weight must be in [0, 1] (got {prior_weight})")
        self.prior_weight = prior_weight
        self.models: list[str] = []
        self.tasks: list[str] = []
        self.embedder_id: str = ""
        self.prices: dict[str, ModelPrice] = {}
        self.output_tokens: int = DEFAULT_OUTPUT_TOKENS
        self.ranges: TaskRanges | None = None
        self.task_prior: FloatMatrix = np.zeros((0, 0))
        self.global_prior: FloatMatrix = np.zeros(0)
        self.trained: dict[str, Any] = {}
        self.calibration: dict[str, Any] = {}
        """What ``route train`` chose on a validation split (see
        :mod:`polyfuse.routing.calibrate`): the prediction settings, the ``tolerance`` and the
        validation numbers; empty when the router was not calibrated."""

    @property
    def tolerance(self) -> float | None:
        """The validated tolerance ε of the cheapest-within-ε selection (None if none)."""
        value = self.calibration.get("tolerance")
        return float(value) if isinstance(value, int | float) else None

    # ------------------------------------------------------------------ training

    def fit(
        self,
        table: RoutingTable,
        embeddings: Matrix,
        *,
        embedder_id: str,
        prices: Mapping[str, ModelPrice] | None = None,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> Router:
        """Learn from ``table`` (one embedding row per query); returns self."""
        if embeddings.ndim != 2 or embeddings.shape[0] != len(table):
            raise InvalidRequestError(
                f"{embeddings.shape[0]} embeddings for {len(table)} queries: one row per query"
            )
        started = time.perf_counter()
        self.models = list(table.models)
        self.tasks = table.task_names
        self.embedder_id = embedder_id
        self.prices = {m: prices[m] for m in self.models if prices and m in prices}
        self.output_tokens = output_tokens
        self.ranges = task_ranges(table)
        self.global_prior = np.nan_to_num(np.nanmean(table.scores, axis=0))
        prior = np.tile(self.global_prior, (len(self.tasks), 1))
        for t, task in enumerate(self.tasks):
            rows = table.scores[table.task_rows(task)]
            with np.errstate(invalid="ignore"):
                means = np.nanmean(rows, axis=0) if rows.size else self.global_prior
            prior[t] = np.where(np.isfinite(means), means, self.global_prior)
        self.task_prior = prior
        task_index = np.array(
            [self.tasks.index(t) if t is not None else -1 for t in table.tasks], dtype=np.int64
        )
        self._fit(np.asarray(embeddings, dtype=np.float32), table.scores, task_index)
        self.trained = {"queries": len(table), "seconds": round(time.perf_counter() - started, 3)}
        return self

    @abstractmethod
    def _fit(self, embeddings: Matrix, scores: FloatMatrix, task_index: IntArray) -> None: ...

    # ------------------------------------------------------------------ prediction

    @abstractmethod
    def _predict_local(self, embeddings: Matrix) -> tuple[FloatMatrix, FloatMatrix]:
        """(per-model scores, task probabilities) for each row."""

    def predict(self, embeddings: Matrix, tasks: Sequence[str | None] | None = None) -> FloatMatrix:
        """Expected score of each model (columns: :attr:`models`) for each query (rows).

        ``tasks[i]`` is query ``i``'s task when known (a task the log lacks counts as
        unknown); unknown tasks are inferred.
        """
        return self.predict_with_tasks(embeddings, tasks)[0]

    def predict_with_tasks(
        self, embeddings: Matrix, tasks: Sequence[str | None] | None = None
    ) -> tuple[FloatMatrix, list[str | None]]:
        """:meth:`predict`, and each query's task: the given one, else the inferred one."""
        self._require_fitted()
        matrix = np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        local, task_probs = self._predict_local(matrix)
        inferred: list[str | None] = (
            [self.tasks[int(i)] for i in task_probs.argmax(axis=1)]
            if self.tasks
            else [None] * len(matrix)
        )
        if tasks is not None:
            if len(tasks) != matrix.shape[0]:
                raise InvalidRequestError(f"{len(tasks)} tasks for {matrix.shape[0]} queries")
            for i, task in enumerate(tasks):
                if task is not None and task in self.tasks:
                    task_probs[i] = 0.0
                    task_probs[i, self.tasks.index(task)] = 1.0
                    inferred[i] = task
        prior = (
            task_probs @ self.task_prior
            if self.tasks
            else np.tile(self.global_prior, (len(matrix), 1))
        )
        return (1.0 - self.prior_weight) * local + self.prior_weight * prior, inferred

    def infer_tasks(self, embeddings: Matrix) -> list[str | None]:
        """The most likely task of each query (None when the log had no tasks)."""
        self._require_fitted()
        _, probs = self._predict_local(np.asarray(embeddings, dtype=np.float32))
        if not self.tasks:
            return [None] * len(probs)
        return [self.tasks[int(i)] for i in probs.argmax(axis=1)]

    def _require_fitted(self) -> None:
        if not self.models:
            raise InvalidRequestError(
                f"this {type(self).__name__} is not trained; call fit() first"
            )

    # ------------------------------------------------------------------ cost

    def estimated_costs(self, prompt_tokens: int) -> FloatMatrix:
        """Each model's estimated $ for a query of ``prompt_tokens`` (NaN without a price)."""
        return np.array(
            [
                self.prices[m].cost(prompt_tokens, self.output_tokens)
                if m in self.prices
                else float("nan")
                for m in self.models
            ]
        )

    # ------------------------------------------------------------------ files

    @abstractmethod
    def _arrays(self) -> dict[str, npt.NDArray[Any]]: ...

    @abstractmethod
    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None: ...

    def _params(self) -> dict[str, Any]:
        return {"prior_weight": self.prior_weight}

    def save(self, path: str | Path) -> Path:
        """Write the router as one ``.npz`` file (see the module docstring); returns the path."""
        self._require_fitted()
        assert self.ranges is not None
        target = Path(path)
        if target.suffix != ".npz":
            target = target.with_suffix(".npz")
        header = {
            "format": "polyfuse-router",
            "version": ROUTER_FORMAT_VERSION,
            "kind": self.kind,
            "models": self.models,
            "tasks": self.tasks,
            "embedder": self.embedder_id,
            "params": self._params(),
            "prices": {m: [p.input_per_m, p.output_per_m] for m, p in self.prices.items()},
            "output_tokens": self.output_tokens,
            "ranges": {
                "score": _ranges_json(self.ranges.score),
                "cost": _ranges_json(self.ranges.cost),
            },
            "trained": self.trained,
            "calibration": self.calibration,
        }
        blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        target.parent.mkdir(parents=True, exist_ok=True)
        savez: Any = np.savez  # its **kwds overlap allow_pickle in numpy's stubs
        savez(
            target,
            header=blob,
            task_prior=self.task_prior,
            global_prior=self.global_prior,
            **self._arrays(),
        )
        return target


def _ranges_json(ranges: Mapping[str | None, Range]) -> dict[str, list[float | None]]:
    def clean(x: float) -> float | None:
        return x if np.isfinite(x) else None

    return {("" if k is None else k): [clean(r.low), clean(r.high)] for k, r in ranges.items()}


def _ranges_from_json(raw: Mapping[str, list[float | None]]) -> dict[str | None, Range]:
    def num(x: float | None) -> float:
        return float("nan") if x is None else float(x)

    return {(None if k == "" else k): Range(num(v[0]), num(v[1])) for k, v in raw.items()}


def _dot(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """a @ b; for a few rows through einsum, which stays on one core: a multi-threaded BLAS
    call for one query spins its threads and took 15-25 ms instead of 0.3 ms on a loaded
    2-core machine (routing one query must stay under 5 ms)."""
    if a.shape[0] <= 8:
        return np.einsum("ij,jk->ik", a, b)
    return a @ b


def _softmax(z: FloatMatrix) -> FloatMatrix:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class KnnRouter(Router):
    """Similarity-weighted k nearest neighbours over query embeddings.

    A model's estimate is the neighbours' scores weighted by ``exp((sim − sim_max) / τ)``:
    a near-duplicate of a logged query dominates, a vague match spreads the weight. Unknown
    tasks are inferred by the same weighted vote over the neighbours' tasks.

    Args:
        k: neighbours (FusionFactory's RouterKNN uses 50 with a plain vote).
        temperature: τ of the weights (smaller = sharper).
        prior_weight: the weight of the task prior in the final estimate.

    Saved arrays: ``embeddings`` (float16, one row per logged query), ``scores`` (float32,
    NaN = no record), ``task_index`` (int, −1 = no task).
    """

    kind: ClassVar[str] = "knn"
    prediction_grid: ClassVar[dict[str, tuple[float, ...]]] = {
        "prior_weight": (0.3, 0.5, 0.7),
        "temperature": (0.02, 0.05, 0.1),
    }

    def __init__(self, k: int = 100, temperature: float = 0.05, *, prior_weight: float = 0.5):
        super().__init__(prior_weight=prior_weight)
        if k < 1 or temperature <= 0:
            raise InvalidRequestError(
                f"k must be >= 1 and temperature > 0 (got {k}, {temperature})"
            )
        self.k = k
        self.temperature = temperature
        self._embeddings: Matrix = np.zeros((0, 0), dtype=np.float32)
        self._scores: npt.NDArray[np.floating[Any]] = np.zeros((0, 0))
        self._task_index: IntArray = np.zeros(0, dtype=np.int64)

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "k": self.k, "temperature": self.temperature}

    def _fit(self, embeddings: Matrix, scores: FloatMatrix, task_index: IntArray) -> None:
        self._embeddings = embeddings.astype(np.float32)
        self._scores = scores.astype(np.float32)
        self._task_index = task_index

    def _predict_local(self, embeddings: Matrix) -> tuple[FloatMatrix, FloatMatrix]:
        sims = _dot(embeddings, self._embeddings.T)
        k = min(self.k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        weights = np.exp((near - near.max(axis=1, keepdims=True)) / self.temperature)
        values = self._scores[top].astype(np.float64)  # (n, k, models)
        known = np.isfinite(values)
        w = weights[:, :, None] * known
        total = w.sum(axis=1)
        local = np.where(
            total > 0,
            (np.where(known, values, 0.0) * w).sum(axis=1) / np.where(total > 0, total, 1.0),
            self.global_prior[None, :],
        )
        probs = np.zeros((len(embeddings), max(len(self.tasks), 1)))
        if self.tasks:
            neighbour_tasks = self._task_index[top]
            for t in range(len(self.tasks)):
                probs[:, t] = (weights * (neighbour_tasks == t)).sum(axis=1)
            sums = probs.sum(axis=1, keepdims=True)
            probs = np.where(sums > 0, probs / np.where(sums > 0, sums, 1.0), 1.0 / len(self.tasks))
        return local, probs

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "embeddings": self._embeddings.astype(np.float16),
            "scores": self._scores,
            "task_index": self._task_index,
        }

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self._embeddings = arrays["embeddings"].astype(np.float32)
        self._scores = arrays["scores"].astype(np.float32)
        self._task_index = arrays["task_index"].astype(np.int64)


class MlpRouter(Router):
    """A small neural router in numpy: embedding → ReLU hidden layer → two heads.

    The score head predicts each model's score (sigmoid, cross-entropy on the logged scores;
    missing cells are masked out); the task head classifies the task (softmax), used when
    the caller does not know it. Trained with Adam on mini-batches, seeded.

    Args:
        hidden: hidden units.
        epochs: passes over the log.
        learning_rate / weight_decay / batch_size / seed: the optimiser's settings.
        prior_weight: the weight of the task prior in the final estimate.

    Saved arrays: ``W1 b1`` (input → hidden), ``W2 b2`` (score head), ``W3 b3`` (task head).
    """

    kind: ClassVar[str] = "mlp"

    def __init__(
        self,
        hidden: int = 128,
        epochs: int = 12,
        *,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        seed: int = 0,
        prior_weight: float = 0.5,
    ) -> None:
        super().__init__(prior_weight=prior_weight)
        if hidden < 1 or epochs < 1 or batch_size < 1 or learning_rate <= 0:
            raise InvalidRequestError(
                "hidden, epochs, batch_size >= 1 and learning_rate > 0 needed"
            )
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self._weights: dict[str, FloatMatrix] = {}
        self.on_epoch: Callable[[int], None] | None = None
        """Called after each epoch with its number (progress bars)."""

    def _params(self) -> dict[str, Any]:
        return {
            **super()._params(),
            "hidden": self.hidden,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def _scale(self, embeddings: Matrix) -> FloatMatrix:
        # Unit rows have entries of about 1/sqrt(d); scale them to unit variance.
        return embeddings.astype(np.float64) * np.sqrt(embeddings.shape[1])

    def _activate(self, z: FloatMatrix) -> FloatMatrix:
        """The hidden layer's activation (ReLU)."""
        return np.maximum(z, 0.0)

    def _activation_slope(self, h: FloatMatrix) -> FloatMatrix:
        """d activation / d input at the hidden values ``h`` (for back-propagation)."""
        return (h > 0).astype(np.float64)

    def _forward(self, x: FloatMatrix) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix]:
        p = self._weights
        h = self._activate(_dot(x, p["W1"]) + p["b1"])
        scores = 1.0 / (1.0 + np.exp(-(_dot(h, p["W2"]) + p["b2"])))
        return h, scores, _dot(h, p["W3"]) + p["b3"]

    def _fit(self, embeddings: Matrix, scores: FloatMatrix, task_index: IntArray) -> None:
        rng = np.random.default_rng(self.seed)
        x_all = self._scale(embeddings)
        dims, models, tasks = x_all.shape[1], scores.shape[1], max(len(self.tasks), 1)
        self._weights = p = {
            "W1": rng.normal(0, 1 / np.sqrt(dims), (dims, self.hidden)),
            "b1": np.zeros(self.hidden),
            "W2": rng.normal(0, 1 / np.sqrt(self.hidden), (self.hidden, models)),
            "b2": np.zeros(models),
            "W3": rng.normal(0, 1 / np.sqrt(self.hidden), (self.hidden, tasks)),
            "b3": np.zeros(tasks),
        }
        known = np.isfinite(scores)
        targets = np.where(known, scores, 0.0)
        has_task = task_index >= 0
        onehot = np.zeros((len(task_index), tasks))
        onehot[has_task, task_index[has_task]] = 1.0
        m = {k: np.zeros_like(v) for k, v in p.items()}
        v = {k: np.zeros_like(w) for k, w in p.items()}
        step = 0
        for epoch in range(self.epochs):
            order = rng.permutation(len(x_all))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                x = x_all[batch]
                h, predicted, logits = self._forward(x)
                mask = known[batch]
                grad_s = (predicted - targets[batch]) * mask / max(mask.sum(), 1) * models
                grad_t = (_softmax(logits) - onehot[batch]) * has_task[batch][:, None]
                grad_t /= len(batch)
                grads = {
                    "W2": h.T @ grad_s,
                    "b2": grad_s.sum(axis=0),
                    "W3": h.T @ grad_t,
                    "b3": grad_t.sum(axis=0),
                }
                grad_h = (grad_s @ p["W2"].T + grad_t @ p["W3"].T) * self._activation_slope(h)
                grads["W1"] = x.T @ grad_h
                grads["b1"] = grad_h.sum(axis=0)
                step += 1
                for name, weight in p.items():
                    g = grads[name] + self.weight_decay * weight
                    m[name] = 0.9 * m[name] + 0.1 * g
                    v[name] = 0.999 * v[name] + 0.001 * g * g
                    m_hat = m[name] / (1 - 0.9**step)
                    v_hat = v[name] / (1 - 0.999**step)
                    weight -= self.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1)

    def _predict_local(self, embeddings: Matrix) -> tuple[FloatMatrix, FloatMatrix]:
        _, scores, logits = self._forward(self._scale(embeddings))
        return scores, _softmax(logits)

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {name: w.astype(np.float32) for name, w in self._weights.items()}

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self._weights = {
            name: arrays[name].astype(np.float64) for name in ("W1", "b1", "W2", "b2", "W3", "b3")
        }


class MfRouter(MlpRouter):
    """A matrix-factorisation router (RouteLLM's and FusionFactory's "MF"): a query's
    embedding is projected to ``rank`` latent factors, each model has ``rank`` factors, and
    the predicted score is ``sigmoid(⟨P·x, v_model⟩ + b_model)``.

    It is :class:`MlpRouter` with a linear hidden layer of ``rank`` units (the projection
    ``P`` is ``W1``, the model factors are the columns of ``W2``), trained the same way, with
    the same task head. Saved arrays: as :class:`MlpRouter`'s.

    Args:
        rank: latent factors per query and model.
        epochs / learning_rate / weight_decay / batch_size / seed / prior_weight: as
            :class:`MlpRouter`'s.
    """

    kind: ClassVar[str] = "mf"

    def __init__(
        self,
        rank: int = 32,
        epochs: int = 12,
        *,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        seed: int = 0,
        prior_weight: float = 0.5,
    ) -> None:
        super().__init__(
            hidden=rank,
            epochs=epochs,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            batch_size=batch_size,
            seed=seed,
            prior_weight=prior_weight,
        )

    @property
    def rank(self) -> int:
        """Latent factors per query and model."""
        return self.hidden

    def _params(self) -> dict[str, Any]:
        params = super()._params()
        params["rank"] = params.pop("hidden")
        return params

    def _activate(self, z: FloatMatrix) -> FloatMatrix:
        return z

    def _activation_slope(self, h: FloatMatrix) -> FloatMatrix:
        return np.ones_like(h)


ROUTER_KINDS: dict[str, type[Router]] = {"knn": KnnRouter, "mlp": MlpRouter, "mf": MfRouter}
"""Router classes by the ``kind`` written in their files."""


def load_router(path: str | Path) -> Router:
    """Load a router saved by :meth:`Router.save` (never unpickles anything)."""
    source = Path(path)
    if not source.exists():
        raise InvalidRequestError(f"router file {source} does not exist; train one first")
    try:
        with np.load(source, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"{source} is not a polyfuse router file ({exc})") from None
    if "header" not in arrays:
        raise InvalidRequestError(f"{source} is not a polyfuse router file (no header)")
    try:
        header = json.loads(arrays["header"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequestError(f"{source}: the router header is not JSON") from None
    if header.get("format") != "polyfuse-router":
        raise InvalidRequestError(f"{source} is not a polyfuse router file")
    version = header.get("version")
    if not isinstance(version, int) or version > ROUTER_FORMAT_VERSION:
        raise InvalidRequestError(
            f"{source} is router format version {version}; this polyfuse reads up to "
            f"{ROUTER_FORMAT_VERSION}: upgrade polyfuse"
        )
    cls = ROUTER_KINDS.get(header.get("kind", ""))
    if cls is None:
        raise InvalidRequestError(f"{source}: unknown router kind {header.get('kind')!r}")
    router = cls(**header["params"])
    router.models = list(header["models"])
    router.tasks = list(header["tasks"])
    router.embedder_id = str(header["embedder"])
    router.prices = {m: ModelPrice(float(p[0]), float(p[1])) for m, p in header["prices"].items()}
    router.output_tokens = int(header["output_tokens"])
    router.ranges = TaskRanges(
        _ranges_from_json(header["ranges"]["score"]), _ranges_from_json(header["ranges"]["cost"])
    )
    router.trained = dict(header.get("trained", {}))
    router.calibration = dict(header.get("calibration", {}))
    router.task_prior = arrays["task_prior"].astype(np.float64)
    router.global_prior = arrays["global_prior"].astype(np.float64)
    router._restore(arrays)
    return router
