"""`Plan` and `Clip`: what the samplers hand to the lifters, and their JSON form.

A lifter is a video model: it generates the F frames of one clip at once, driven by a temporally
smooth `Kinematics [F]` and conditioned on K reference frames of the capture. A `Plan` is an
ordered list of such clips; its frame count `n` is the sum of the clip lengths.

JSON (`Plan.to_json` / `Plan.from_json`, exact round trip: each float32 value is written as the
shortest decimal of its exact float64 value, which reads back to the same float32)::

    {"format": "liftdata.plan", "version": 1,
     "bounds": {"lower": [E], "upper": [E]} | null,
     "clips": [{"kinematics": Kinematics.to_dict(),
                "reference_indices": [K ints],
                "provenance": {"sampler": str, "params": {...}, "seed": int}}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from liftdata.errors import LiftdataError
from liftdata.kinematics import Kinematics

__all__ = ["Clip", "Plan", "PlanError", "RepeatedClipsWarning"]

PLAN_FORMAT = "liftdata.plan"
PLAN_VERSION = 1


class PlanError(LiftdataError, ValueError):
    """An invalid plan, or a sampler that cannot make the plan asked for; the message says which."""


class RepeatedClipsWarning(UserWarning):
    """A sampler was asked for more clips than it can make distinct; some clips repeat."""


def json_safe(value: Any) -> Any:
    """Tuples -> lists, numpy scalars/arrays -> Python numbers/lists (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, eq=False)
class Clip:
    """One lifter call: F driving frames, the capture frames to use as references, provenance.

    Attributes:
        kinematics: [F] driving kinematics (temporally smooth).
        reference_indices: K distinct frame indices into the capture.
        provenance: {"sampler": name, "params": JSON-safe parameters, "seed": int}.
    """

    kinematics: Kinematics
    reference_indices: tuple[int, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        refs = tuple(int(i) for i in self.reference_indices)
        if not refs or len(set(refs)) != len(refs) or min(refs) < 0:
            raise PlanError(f"clip reference_indices: need distinct non-negative frame indices, got {list(refs)}")
        if len(self.kinematics) == 0:
            raise PlanError("clip kinematics: a clip needs at least one frame")
        object.__setattr__(self, "reference_indices", refs)
        object.__setattr__(self, "provenance", json_safe(self.provenance))

    def __len__(self) -> int:
        return len(self.kinematics)

    def to_dict(self) -> dict[str, Any]:
        return {"kinematics": self.kinematics.to_dict(), "reference_indices": list(self.reference_indices),
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Clip:
        try:
            return cls(Kinematics.from_dict(d["kinematics"]), tuple(d["reference_indices"]), dict(d["provenance"]))
        except KeyError as e:
            raise PlanError(f"plan clip: missing field {e.args[0]!r}") from None

    def equals(self, other: Clip) -> bool:
        return (self.kinematics.equals(other.kinematics) and self.reference_indices == other.reference_indices
                and self.provenance == other.provenance)


@dataclass(frozen=True, eq=False)
class Plan:
    """An ordered list of clips (`n` frames in all), optionally checked against expression bounds.

    Attributes:
        clips: the clips, in the order the lifter will generate them.
        lower, upper: [E] expression bounds every frame must respect (None: not checked).
            Samplers pass the head model prior's bounds, so every plan they return is valid.
    """

    clips: tuple[Clip, ...]
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "clips", tuple(self.clips))
        for c in self.clips[1:]:
            self.clips[0].kinematics.check_compatible(c.kinematics)
        if (self.lower is None) != (self.upper is None):
            raise PlanError("plan bounds: give both lower and upper, or neither")
        if self.lower is not None:
            object.__setattr__(self, "lower", np.asarray(self.lower, np.float64))
            object.__setattr__(self, "upper", np.asarray(self.upper, np.float64))
            self._check_bounds()

    def _check_bounds(self) -> None:
        # Planned values are float32; compare with the bounds rounded the same (monotone) way.
        lo, hi = self.lower.astype(np.float32), self.upper.astype(np.float32)
        for i, c in enumerate(self.clips):
            e = c.kinematics.expression
            if e.shape[1] != lo.shape[0]:
                raise PlanError(f"plan clip {i}: {e.shape[1]} expression coefficients, bounds have {lo.shape[0]}")
            bad = np.argwhere((e < lo) | (e > hi))
            if len(bad):
                f, j = bad[0].tolist()
                raise PlanError(f"plan clip {i} ({c.provenance.get('sampler')}): frame {f} expression[{j}]="
                                f"{e[f, j]} outside bounds [{lo[j]}, {hi[j]}]")

    # ------------------------------------------------------------------ access
    @property
    def n(self) -> int:
        """Number of planned frames (sum of clip lengths)."""
        return sum(len(c) for c in self.clips)

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)

    def kinematics(self) -> Kinematics:
        """All planned frames, concatenated in order: [n]."""
        if not self.clips:
            raise PlanError("plan is empty: no kinematics")
        return Kinematics.concat([c.kinematics for c in self.clips])

    # ------------------------------------------------------------------ algebra on plans
    def __add__(self, other: Plan) -> Plan:
        """Clips of `self`, then clips of `other` (bounds kept if both have the same ones)."""
        same = (self.lower is not None and other.lower is not None and np.array_equal(self.lower, other.lower)
                and np.array_equal(self.upper, other.upper))
        return Plan(self.clips + other.clips, self.lower if same else None, self.upper if same else None)

    def take(self, n: int) -> Plan:
        """The first `n` frames: whole clips, then the first frames of the clip straddling `n`."""
        if n < 0:
            raise PlanError(f"take: n must be >= 0, got {n}")
        clips, left = [], n
        for c in self.clips:
            if left <= 0:
                break
            clips.append(c if len(c) <= left else Clip(c.kinematics[:left], c.reference_indices, c.provenance))
            left -= len(c)
        return Plan(tuple(clips), self.lower, self.upper)

    def filter(self, predicate) -> Plan:
        """The clips for which `predicate(clip)` is true, in order."""
        return Plan(tuple(c for c in self.clips if predicate(c)), self.lower, self.upper)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        bounds = None if self.lower is None else {"lower": self.lower.tolist(), "upper": self.upper.tolist()}
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "bounds": bounds,
                "clips": [c.to_dict() for c in self.clips]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        if d.get("format") != PLAN_FORMAT or d.get("version") != PLAN_VERSION:
            raise PlanError(f"plan: expected format {PLAN_FORMAT!r} version {PLAN_VERSION}, "
                            f"got {d.get('format')!r} version {d.get('version')!r}")
        bounds = d.get("bounds")
        return cls(tuple(Clip.from_dict(c) for c in d["clips"]),
                   None if bounds is None else bounds["lower"], None if bounds is None else bounds["upper"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))

    def equals(self, other: Plan) -> bool:
        return len(self.clips) == len(other.clips) and all(a.equals(b) for a, b in zip(self.clips, other.clips))

    def summary(self) -> str:
        """Human-readable lines: frames per sampler and what the pose support did (see `PoseSweep`)."""
        frames: dict[str, int] = {}
        for c in self.clips:
            frames[c.provenance.get("sampler", "?")] = frames.get(c.provenance.get("sampler", "?"), 0) + len(c)
        lines = [f"{self.n} frames in {len(self.clips)} clips: "
                 + ", ".join(f"{name} {count}" for name, count in sorted(frames.items()))]
        notes = [s for c in self.clips for s in _find(c.provenance, "support")]
        if notes:
            degs = sorted({s["support_deg"] for s in notes})
            clipped, beyond = sum(s["clipped"] for s in notes), sum(s["beyond"] for s in notes)
            line = (f"pose support {'/'.join(f'{d:g}' for d in degs)} deg from the nearest capture pose: "
                    f"{clipped} frames pulled back onto it")
            if beyond:
                line += f", {beyond} frames BEYOND it (explicit ranges)"
            lines.append(line + f"; farthest planned pose {max(s['max_distance_deg'] for s in notes):.1f} deg")
        return "\n".join(lines)

    def __repr__(self) -> str:
        names = sorted({c.provenance.get("sampler", "?") for c in self.clips})
        return f"Plan(clips={len(self.clips)}, n={self.n}, samplers={names})"


def _find(tree: Any, key: str) -> list[Any]:
    """Every value stored under `key` in nested provenance dicts."""
    if not isinstance(tree, Mapping):
        return []
    found = [tree[key]] if key in tree else []
    return found + [v for sub in tree.values() for v in _find(sub, key)]


def concat_plans(plans: Sequence[Plan]) -> Plan:
    """Plans one after the other (an empty list gives an empty plan)."""
    out = Plan(())
    for i, p in enumerate(plans):
        out = p if i == 0 else out + p
    return out
