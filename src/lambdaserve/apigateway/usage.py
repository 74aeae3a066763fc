"""Usage plans as API Gateway applies them: a throttle per key and a quota per period.

Throttle: a token bucket per API key holding at most ``burst`` tokens, refilled at
``rate`` tokens per second; a request takes one token or is refused with 429 "Too Many
Requests". Over any T seconds at most ``burst + rate * T`` requests pass.

Quota: a count per key per DAY, WEEK (from Monday) or MONTH, in UTC; past the limit a
request is refused with 429 "Limit Exceeded". Refused requests use neither a token nor
the quota.

Counts live in memory, where this single-threaded event loop updates them exactly, and
reach the store before any answer that used them is sent: ``admit`` gives each counted
request a number, and ``written(number)``, called before its answer goes out, writes every
count not yet written in one SQLite transaction unless an earlier write covered it. Answers
come back from the environments in batches, so one write covers many requests (and the
half-second housekeeping flush covers the rest). So a ``kill -9`` of the gateway loses no
admitted request: every answered request was counted (one admitted but never answered may
be counted too). The store commits without fsync (WAL, synchronous=NORMAL): a power cut may
lose the last moments of counting. The clocks are injected so tests are exact.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from lambdaserve.apigateway.errors import LimitExceeded, TooManyRequests
from lambdaserve.store import ApiKey, Store, UsagePlan
from lambdaserve.store.records import period_start

Clock = Callable[[], float]
log = logging.getLogger(__name__)


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class UsageLimiter:
    def __init__(self, store: Store, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.store = store
        self.clock = clock
        self.wall = wall
        self.buckets: dict[str, TokenBucket] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.admitted = 0  # counted requests so far, numbered from 1
        self.stored = 0  # the number up to which every count is in the store

    def admit(self, key: ApiKey, plan: UsagePlan | None) -> int | None:
        """Count one request against the key's plan, or raise the 429 it gets.

        Returns a counted request's number: pass it to ``written`` before answering.
        """
        if plan is None:
            return None
        slot = None
        if plan.quota_limit is not None and plan.quota_period:
            slot = (key.id, period_start(plan.quota_period, self.wall()))
            if self._count(slot) >= plan.quota_limit:
                raise LimitExceeded(f"key {key.id} used its {plan.quota_limit}/{plan.quota_period}")
        if plan.rate is not None and plan.burst is not None:
            bucket = self.buckets.get(key.id)
            if bucket is None or (bucket.rate, bucket.burst) != (plan.rate, plan.burst):
                bucket = self.buckets[key.id] = TokenBucket(plan.rate, plan.burst, self.clock())
            if not bucket.take(self.clock()):
                raise TooManyRequests(f"key {key.id} over {plan.rate}/s")
        if slot is None:
            return None
        self.counts[slot] += 1
        self.dirty.add(slot)
        self.admitted += 1
        return self.admitted

    def used(self, key: ApiKey, plan: UsagePlan) -> int:
        if plan.quota_period is None:
            return 0
        return self._count((key.id, period_start(plan.quota_period, self.wall())))

    def _count(self, slot: tuple[str, str]) -> int:
        if slot not in self.counts:
            self.counts[slot] = self.store.usage(*slot)
        return self.counts[slot]

    def written(self, number: int) -> None:
        """Make sure counted request ``number`` is in the store (the caller answers it next)."""
        if number <= self.stored:
            return
        try:
            self.flush()
        except sqlite3.Error as exc:  # kept dirty: housekeeping writes it again in half a second
            log.warning("Could not write usage counts to the store (%s); retrying.", exc)

    def flush(self) -> None:
        """Write the changed counts (absolute values) to the store, in one transaction."""
        if not self.dirty:
            return
        changed = {slot: self.counts[slot] for slot in self.dirty}
        covered = self.admitted
        self.dirty = set()
        try:
            self.store.save_usage(changed)
        except BaseException:
            self.dirty |= changed.keys()
            raise
        self.stored = covered
