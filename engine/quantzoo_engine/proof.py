"""Fences the engine trades behind when it watches Kubernetes. Pure: monotonic times in, answers out.

- Proof of state: the engine trades only while it has had proof of the kill switch's state (a read, a
  watch event or a bookmark) within `bound` seconds. A partition that silently drops the API server's
  packets stops the proofs, so the engine halts itself (`no_proof_of_state`) instead of trading on its
  last "released" view; a fresh proof (the re-read after the partition heals) lifts it.
  Levels (issue #13): each other level the engine watches (its TradingAccount, the TradingHalts) proves
  itself too, and the state is proven only while EVERY watched level is: losing the view of any level
  halts the engine until that level is read again.
- The trading Lease: valid until `sent + duration - margin`, where `sent` is when the successful renew
  was SENT (the API server stamped it later, so another engine cannot see it expire before this).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Freshness:
    """True until `until` (monotonic seconds); renewed by whoever proves it again."""

    until: float | None = None

    def renew_until(self, until: float) -> None:
        self.until = until if self.until is None else max(self.until, until)

    def revoke(self) -> None:
        self.until = None

    def valid(self, now: float) -> bool:
        return self.until is not None and now < self.until


@dataclass(slots=True)
class ProofOfState:
    bound_seconds: float
    freshness: Freshness  # the own TradingSystem's
    # The other watched levels' (key: the watch's name), each unproven until its first read.
    levels: dict[str, Freshness] = field(default_factory=dict)

    @classmethod
    def with_bound(cls, bound_seconds: float) -> ProofOfState:
        return cls(bound_seconds, Freshness())

    def watch(self, level: str) -> None:
        """Another level to prove: the state is unproven until it has been read."""
        self.levels.setdefault(level, Freshness())

    def _of(self, level: str | None) -> Freshness:
        return self.freshness if level is None else self.levels.setdefault(level, Freshness())

    def prove(self, now: float, level: str | None = None) -> None:
        self._of(level).renew_until(now + self.bound_seconds)

    def lose(self, level: str | None = None) -> None:
        self._of(level).revoke()

    def fresh(self, now: float) -> bool:
        return self.freshness.valid(now) and all(f.valid(now) for f in self.levels.values())

    def unproven(self, now: float) -> list[str]:
        """The watched levels without fresh proof (for logs and /state)."""
        return [name for name, f in self.levels.items() if not f.valid(now)]
