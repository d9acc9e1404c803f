"""The sampler base: frame counting, clip assembly, references, provenance, and operators.

Counting rule (every sampler): `sample(capture, n, rng)` returns a plan of exactly `n` frames in
ceil(n / clip_length) clips; all clips have `clip_length` frames except the last, which holds the
remaining n mod clip_length frames. The last clip is the *first frames of a full clip*, so the
smoothness bound of a full clip holds for it too (a lifter pads or crops it as it likes).

Determinism: a sampler draws one seed from `rng`, records it in every clip's provenance and uses
only `numpy.random.default_rng(seed)` and elementwise float64 arithmetic from there on: easing is
the polynomial smoothstep (not a SIMD-dispatched cosine), distances and whitening are numpy sums
(no BLAS/LAPACK: see `cholesky`, `forward_substitute`), so the same seed and n give the same
plan. Rotation composition goes through scipy (libm sin/cos): identical where libm is.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from liftdata.kinematics import Kinematics
from liftdata.samplers.plan import Clip, Plan, PlanError, RepeatedClipsWarning, json_safe
from liftdata.samplers.references import ReferencePolicy, usable_reference_frames

__all__ = ["Sampler", "LeafSampler", "Context", "smoothstep", "clip_lengths", "check_request"]

SEED_HIGH = 2**63 - 1


def smoothstep(t: np.ndarray) -> np.ndarray:
    """3t^2 - 2t^3 on [0, 1]: eases in and out; its slope is at most 1.5."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def clip_lengths(n: int, clip_length: int) -> list[int]:
    """Lengths of the clips that hold n frames (see the counting rule above)."""
    full, rest = divmod(n, clip_length)
    return [clip_length] * full + ([rest] if rest else [])


def check_request(capture: Any, n: Any, rng: Any) -> None:
    """Validate the arguments of `Sampler.sample` (the user boundary)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise PlanError(f"sample: n must be a non-negative integer number of frames, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise PlanError(f"sample: rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    for attr in ("kinematics", "head_model"):
        if not hasattr(capture, attr):
            raise PlanError(f"sample: capture has no {attr!r} (expected a liftdata Capture or an object with "
                            f"kinematics and head_model)")
    if len(capture.kinematics) == 0:
        raise PlanError("sample: the capture has no frames")


def cholesky(cov: np.ndarray) -> np.ndarray:
    """[E, E] lower Cholesky factor by the textbook recurrence, with elementwise numpy sums only
    (no BLAS/LAPACK, whose kernels differ between machines in the last bits)."""
    cov = np.asarray(cov, np.float64)
    e = len(cov)
    chol = np.zeros_like(cov)
    for j in range(e):
        d = cov[j, j] - (chol[j, :j] ** 2).sum()
        if d <= 0:
            raise PlanError(f"expression prior: covariance is not positive definite (pivot {j} = {d})")
        chol[j, j] = np.sqrt(d)
        chol[j + 1:, j] = (cov[j + 1:, j] - (chol[j + 1:, :j] * chol[j, :j]).sum(1)) / chol[j, j]
    return chol


def forward_substitute(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve chol @ x.T = b.T for x, b: [N, E] (chol lower triangular), elementwise sums only."""
    x = np.zeros_like(b, dtype=np.float64)
    for i in range(chol.shape[0]):
        x[:, i] = (b[:, i] - (x[:, :i] * chol[i, :i]).sum(1)) / chol[i, i]
    return x


def lower_times(chol: np.ndarray, z: np.ndarray) -> np.ndarray:
    """z @ chol.T for z: [N, E], elementwise sums only."""
    return (z[:, None, :] * chol[None, :, :]).sum(-1)


@dataclass(frozen=True)
class Context:
    """What samplers read from a capture, computed once per `sample` call."""

    observed: Kinematics  # [T]
    lower: np.ndarray  # [E] float64
    upper: np.ndarray
    mean: np.ndarray
    chol: np.ndarray  # [E, E] lower Cholesky factor of the prior covariance
    names: tuple[str, ...] | None
    camera: Any

    @classmethod
    def of(cls, capture: Any) -> Context:
        prior = capture.head_model.expression_prior()
        names = capture.head_model.expression_names
        cov = np.asarray(prior.covariance, np.float64)
        return cls(capture.kinematics, np.asarray(prior.lower, np.float64), np.asarray(prior.upper, np.float64),
                   np.asarray(prior.mean, np.float64), cholesky(cov), None if names is None else tuple(names),
                   getattr(capture, "camera", None))

    def whiten(self, expression: np.ndarray) -> np.ndarray:
        """[N, E] coefficients -> [N, E] whitened (identity covariance under the prior)."""
        return forward_substitute(self.chol, np.asarray(expression, np.float64) - self.mean)

    def bounded(self, expression: np.ndarray) -> np.ndarray:
        return np.clip(expression, self.lower, self.upper)


class Sampler:
    """Base of all samplers: `sample(capture, n, rng) -> Plan` plus the composition operators.

    `a + b`: concatenate (n split equally); `a * b`: expression of one, pose of the other, clip by
    clip; `.filter(predicate)`: keep clips for which predicate(clip) is true (resampling to reach
    n); `.take(n)`: at most n frames. See `liftdata.samplers.compose`.
    """

    #: which part of the kinematics this sampler decides: "expression", "pose" or "both"
    provides: ClassVar[str] = "both"

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        raise NotImplementedError

    def __add__(self, other: Sampler) -> Sampler:
        from liftdata.samplers.compose import Concat

        if not isinstance(other, Sampler):
            return NotImplemented
        return Concat.of(self, other)

    def __mul__(self, other: Sampler) -> Sampler:
        from liftdata.samplers.compose import Product

        if not isinstance(other, Sampler):
            return NotImplemented
        return Product(self, other)

    def filter(self, predicate: Callable[[Clip], bool], max_tries: int = 10) -> Sampler:
        from liftdata.samplers.compose import Filtered

        return Filtered(self, predicate, max_tries)

    def take(self, n: int) -> Sampler:
        from liftdata.samplers.compose import Take

        return Take(self, n)


class LeafSampler(Sampler):
    """A sampler that makes clips itself. Subclasses are frozen dataclasses with fields
    `clip_length` and `references` and implement `_clips` (and `capacity`)."""

    name: ClassVar[str] = "leaf"
    clip_length: int
    references: ReferencePolicy

    def _clips(self, ctx: Context, n_clips: int, rng: np.random.Generator) -> list[Kinematics]:
        """n_clips full-length [clip_length] driving kinematics."""
        raise NotImplementedError

    def _clips_with_notes(self, ctx: Context, n_clips: int, rng: np.random.Generator
                          ) -> list[tuple[Kinematics, Callable[[int], dict[str, Any]]]]:
        """`_clips`, each with a function giving extra provenance for its first m frames (none here)."""
        return [(k, lambda m: {}) for k in self._clips(ctx, n_clips, rng)]

    def check_capture(self, ctx: Context) -> None:
        """Raise PlanError if this sampler cannot plan from the capture at all."""

    def capacity(self, ctx: Context) -> int | None:
        """How many distinct clips this sampler can make for the capture (None: unlimited)."""
        return None

    def params(self) -> dict[str, Any]:
        """JSON-safe parameters (the dataclass fields) for provenance."""
        return json_safe({f.name: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                          for f in dataclasses.fields(self) for v in [getattr(self, f.name)]})

    def _check_clip_length(self, minimum: int = 2) -> None:
        if isinstance(self.clip_length, bool) or not isinstance(self.clip_length, int) or self.clip_length < minimum:
            raise PlanError(f"{type(self).__name__}.clip_length: must be an integer >= {minimum}, got {self.clip_length!r}")

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        check_request(capture, n, rng)
        return self.sample_seed(capture, int(n), int(rng.integers(SEED_HIGH)))

    def sample_seed(self, capture: Any, n: int, seed: int) -> Plan:
        """The plan for a given provenance seed (reproduces any clip's sampler call)."""
        return self.sample_lengths(capture, clip_lengths(n, self.clip_length), seed)

    def sample_lengths(self, capture: Any, lengths: Sequence[int], seed: int) -> Plan:
        """One clip per entry of `lengths` (each <= clip_length): the first frames of full clips."""
        if lengths and max(lengths) > self.clip_length:
            raise PlanError(f"{type(self).__name__}: clips of {max(lengths)} frames asked, clip_length is "
                            f"{self.clip_length}")
        ctx = Context.of(capture)
        self.check_capture(ctx)
        cap = self.capacity(ctx)
        if cap is not None and len(lengths) > cap:
            warnings.warn(f"{type(self).__name__}: asked for {sum(lengths)} frames = {len(lengths)} clips, but this "
                          f"capture ({len(ctx.observed)} frames) allows only {cap} distinct clips; clips repeat",
                          RepeatedClipsWarning, stacklevel=4)
        rng = np.random.default_rng(seed)
        refs = self.references.prepare(ctx.observed, rng, usable_reference_frames(capture))
        trajectories = self._clips_with_notes(ctx, len(lengths), rng) if lengths else []
        prov = {"sampler": self.name, "params": self.params(), "seed": seed}
        clips = tuple(Clip(k[:m], refs(k[:m]), {**prov, **notes(m)}) for (k, notes), m in zip(trajectories, lengths))
        return Plan(clips, ctx.lower, ctx.upper)


def assemble(ctx: Context, expression: np.ndarray, source: Sequence[int] | np.ndarray, weights: np.ndarray | None = None,
             other: Sequence[int] | np.ndarray | None = None) -> Kinematics:
    """Driving kinematics [F]: `expression` [F, E] (clipped to the bounds), the other fields taken
    from observed frame `source` (held) or blended linearly towards frame `other` by `weights` [F]."""
    obs = ctx.observed
    fields = {}
    for name in ("jaw", "neck", "eyes", "rotation", "translation"):
        a = getattr(obs, name)[np.asarray(source)].astype(np.float64)
        if other is not None:
            b = getattr(obs, name)[np.asarray(other)].astype(np.float64)
            a = a + weights[:, None] * (b - a)
        fields[name] = np.broadcast_to(a, (len(expression), a.shape[-1]))
    return Kinematics(ctx.bounded(expression), **fields, head_model=obs.head_model,
                      head_model_version=obs.head_model_version)


def ramp(n_frames: int, start: float, end: float) -> np.ndarray:
    """[n_frames] smoothstep from `start` (frame 0) to `end` (last frame)."""
    t = np.arange(n_frames, dtype=np.float64) / max(n_frames - 1, 1)
    return start + (end - start) * smoothstep(t)


def pulse(n_frames: int, hold: int) -> np.ndarray:
    """[n_frames] 0 -> 1 (smoothstep) -> held at 1 for `hold` frames -> 1 -> 0."""
    up = (n_frames - hold) // 2
    down = n_frames - hold - up
    return np.concatenate([ramp(up + 1, 0.0, 1.0)[:-1], np.ones(hold), ramp(down + 1, 1.0, 0.0)[1:]])[:n_frames]


def distinct_choice(rng: np.random.Generator, population: int, k: int) -> np.ndarray:
    """k draws from range(population): without repeats while possible, then cycling a permutation."""
    if k <= population:
        return rng.choice(population, size=k, replace=False)
    reps = math.ceil(k / population)
    return np.concatenate([rng.permutation(population) for _ in range(reps)])[:k]
