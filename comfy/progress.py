"""Overall progress of a prompt: the Progress events of all its samplers as one fraction, step n/N and ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from comfy.events import Cached, Event, Progress, Succeeded
from comfy.workflow_template import SAMPLER_CLASSES


@dataclass(frozen=True)
class ProgressSnapshot:
    """Overall progress of a prompt across all its samplers."""

    fraction: float
    step: int
    total_steps: int
    node: str | None
    eta_s: float | None


def _literal_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sampler_steps(graph: Mapping[str, Any]) -> dict[str, int | None]:
    """Sampler node ids of an API-format graph and their step count when it is written in the graph."""
    found: dict[str, int | None] = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or node.get("class_type") not in SAMPLER_CLASSES:
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            inputs = {}
        steps = _literal_int(inputs.get("steps"))
        if node["class_type"] == "KSamplerAdvanced" and steps is not None:
            start = _literal_int(inputs.get("start_at_step")) or 0
            end = _literal_int(inputs.get("end_at_step"))
            steps = max(0, min(steps, end if end is not None else steps) - start)
        found[str(node_id)] = steps
    return found


class ProgressTracker:
    """Turn Progress events of every sampler of a workflow into one fraction, step n/N and an ETA.

    Hires and upscale workflows run two samplers; each reports its own `value/max`. Samplers whose
    step count is not known yet count as the average of the known ones. The ETA uses the step
    rate of the sampler running now (or of the whole run so far), measured from its first report
    so the slow warm-up step does not count.
    """

    def __init__(
        self,
        sampler_node_ids: Iterable[str] = (),
        *,
        steps: Mapping[str, int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._samplers: list[str] = [str(node) for node in sampler_node_ids]
        self._adopt_any = not self._samplers
        self._max: dict[str, int] = {
            str(node): count for node, count in (steps or {}).items() if count is not None and count > 0
        }
        self._done: dict[str, int] = {}
        self._first: dict[str, tuple[float, int]] = {}
        self._run_first: tuple[float, int] | None = None
        self._last_time: float | None = None
        self._node: str | None = None
        self._finished = False
        self._clock = clock

    @classmethod
    def from_graph(
        cls, graph: Mapping[str, Any], *, clock: Callable[[], float] = time.monotonic
    ) -> ProgressTracker:
        """Track the samplers found in an API-format graph (KSampler, KSamplerAdvanced, SamplerCustom)."""
        steps = sampler_steps(graph)
        return cls(list(steps), steps=steps, clock=clock)

    def update(self, event: Event) -> ProgressSnapshot | None:
        """Feed any event; return a new snapshot when overall progress changed, else None."""
        if isinstance(event, Cached):
            skipped = [node for node in event.nodes if node in self._samplers]
            for node in skipped:
                self._samplers.remove(node)
            return self.snapshot() if skipped else None
        if isinstance(event, Succeeded):
            self._finished = True
            return self.snapshot()
        if not isinstance(event, Progress) or event.node is None or event.max <= 0:
            return None
        node = event.node
        if node not in self._samplers:
            if not self._adopt_any:
                return None
            self._samplers.append(node)
        now = self._clock()
        self._max[node] = event.max
        self._done[node] = max(0, min(event.value, event.max))
        self._node = node
        self._first.setdefault(node, (now, self._done[node]))
        if self._run_first is None:
            self._run_first = (now, self._total_done())
        self._last_time = now
        return self.snapshot()

    def _total_done(self) -> int:
        return sum(self._done.get(node, 0) for node in self._samplers)

    def _planned(self) -> int:
        known = [self._max[node] for node in self._samplers if node in self._max]
        guess = round(sum(known) / len(known)) if known else 0
        return sum(self._max.get(node, guess) for node in self._samplers)

    def _seconds_per_step(self) -> float | None:
        if self._last_time is None:
            return None
        candidates = []
        if self._node is not None and self._node in self._first:
            candidates.append((self._first[self._node], self._done.get(self._node, 0)))
        if self._run_first is not None:
            candidates.append((self._run_first, self._total_done()))
        for (start_time, start_done), done_now in candidates:
            if done_now > start_done and self._last_time > start_time:
                return (self._last_time - start_time) / (done_now - start_done)
        return None

    def snapshot(self) -> ProgressSnapshot:
        """Overall progress now."""
        total = self._planned()
        done = self._total_done()
        if self._finished:
            return ProgressSnapshot(1.0, max(done, total), max(done, total), self._node, 0.0)
        fraction = min(1.0, done / total) if total else 0.0
        rate = self._seconds_per_step()
        eta = None
        if rate is not None and total:
            eta = max(0.0, (total - done) * rate - (self._clock() - (self._last_time or 0.0)))
        return ProgressSnapshot(fraction, done, total, self._node, eta)
