"""Fences the engine trades behind when it watches Kubernetes. Pure: monotonic times in, answers out.

- Proof of state: the engine trades only while it has had proof of the kill switch's state (a read, a
  watch event or a bookmark) within `bound` seconds. A partition that silently drops the API server's
  packets stops the proofs, so the engine halts itself (`no_proof_of_state`) instead of trading on its
  last "released" view; a fresh proof (the re-read after the partition heals) lifts it.
- The trading Lease: valid until `sent + duration - margin`, where `sent` is when the successful renew
  was SENT (the API server stamped it later, so another engine cannot see it expire before this).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    freshness: Freshness

    @classmethod
    def with_bound(cls, bound_seconds: float) -> ProofOfState:
        return cls(bound_seconds, Freshness())

    def prove(self, now: float) -> None:
        self.freshness.renew_until(now + self.bound_seconds)

    def lose(self) -> None:
        self.freshness.revoke()

    def fresh(self, now: float) -> bool:
        return self.freshness.valid(now)
