"""A Prometheus histogram of durations, as the gate's and the web process's /metrics show it."""

from __future__ import annotations

from bisect import bisect_left


class Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.observed = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.observed += 1

    def lines(self, name: str, help_text: str) -> list[str]:
        """The histogram in Prometheus' text format."""
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            cumulative += n
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.observed}')
        out.append(f"{name}_sum {self.total:.6f}")
        out.append(f"{name}_count {self.observed}")
        return out
