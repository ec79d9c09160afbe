"""What one user, and one run, may cost the portal at once: the `limits:` section kept.

```
budgets = Budgets(config.limits, config.sandbox.max_result_bytes)
budgets.search(user, query)              # raises LimitError: query too long, too many searches this minute
with budgets.run(user): ...              # runs of one user at once, whatever the protocol (approvals included)
with budgets.call(user, run, size) as held:   # calls and argument bytes in flight, per user and per run
    held.add(result_bytes)               # results count too, until the call is done
await budgets.offload(work, *args, size=n)    # work whose cost grows with its input: off the event loop
await budgets.offload(work, *args, size=None) # work whose cost is not its input's (a search of the catalog): always
```
Budgets are counts held while the work is in flight, not time: a run paused for a person's approval keeps its
bytes and its slot, so a paused wall clock lifts nothing here. Each refusal is a `LimitError` naming its key.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio

from portal_mcp.config import LimitsConfig
from portal_mcp.errors import LimitError

T = TypeVar("T")

INLINE_BYTES = 32_000
"""Work on inputs up to this size runs on the event loop (a thread hop costs more); bigger goes to a thread."""


class Held:
    """The bytes one call holds; `add` counts more of them (its result) against the same budgets."""

    def __init__(self, budgets: Budgets, user: str, run: object) -> None:
        self._budgets, self._user, self._run = budgets, user, run
        self.size = 0

    def add(self, size: int) -> None:
        self._budgets._take_bytes(self._user, self._run, size)
        self.size += size


class Budgets:
    """In-flight counts per user and per run, and sliding-minute counts of searches; one per portal, in memory
    (with replicas, each keeps its own)."""

    def __init__(self, limits: LimitsConfig, max_result_bytes: int) -> None:
        self.limits = limits
        self.max_result_bytes = max_result_bytes
        self._runs: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._user_bytes: Counter[str] = Counter()
        self._run_bytes: dict[int, int] = {}
        self._searches: dict[str, deque[float]] = {}
        self._heavy: anyio.CapacityLimiter | None = None
        self._heavy_users: dict[str, anyio.Lock] = {}
        self._offloaded: Counter[str] = Counter()

    def search(self, user: str, query: str) -> None:
        """Admit one search of `user` (counted even when refused for its length: a refusal is work too)."""
        limit = self.limits.searches_per_minute
        now = time.monotonic()
        window = self._searches.setdefault(user, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= limit:
            wait = window[0] + 60 - now
            raise LimitError(
                "limits.searches_per_minute", limit, f"{user!r} searched {limit} times this minute; wait {wait:.0f} s"
            )
        window.append(now)
        if len(query) > self.limits.max_query_chars:
            raise LimitError(
                "limits.max_query_chars",
                self.limits.max_query_chars,
                f"the query is {len(query)} characters long; search with a few words",
            )

    def code(self, code: str) -> None:
        """Refuse code over `limits.max_code_bytes`, or with more items than `limits.max_code_items`, before
        anything parses it: parsing costs about 8 us per literal item (a list of 9,000 dicts, 36 kB, takes 70 ms of
        CPU in the portal's pre-run check, and again in the sandbox), and counting costs next to nothing."""
        limit = self.limits.max_code_bytes
        if len(code) > limit or len(code.encode(errors="replace")) > limit:
            raise LimitError("limits.max_code_bytes", limit, "the code is too long; split the work across runs")
        items = sum(code.count(mark) for mark in ",([{")
        if items > self.limits.max_code_items:
            raise LimitError(
                "limits.max_code_items",
                self.limits.max_code_items,
                f"the code has {items} commas and opening brackets (a big literal?); get data from a tool inside the "
                "run instead of writing it into the code",
            )

    @contextmanager
    def run(self, user: str) -> Iterator[None]:
        """One run of `user` in flight (running, or paused for an approval answer) for the block."""
        limit = self.limits.runs_in_flight
        if self._runs[user] >= limit:
            raise LimitError(
                "limits.runs_in_flight",
                limit,
                f"{self._runs[user]} of your runs are still running or waiting for approval answers; let them "
                "finish (or answer them) before starting more",
            )
        self._runs[user] += 1
        try:
            yield
        finally:
            self._release(self._runs, user, 1)

    @contextmanager
    def call(self, user: str, run: object, size: int) -> Iterator[Held]:
        """One tool call of `user` within `run` holding `size` argument bytes for the block; raises `LimitError`
        when the call or its bytes do not fit (nothing is counted then)."""
        if size > self.limits.max_argument_bytes:
            raise LimitError(
                "limits.max_argument_bytes",
                self.limits.max_argument_bytes,
                f"the arguments are {size} bytes of JSON; pass less per call (a reference, a page, a filter)",
            )
        if self._calls[user] >= self.limits.calls_in_flight:
            raise LimitError(
                "limits.calls_in_flight",
                self.limits.calls_in_flight,
                f"{self._calls[user]} of your tool calls are already waiting; await some before starting more",
            )
        held = Held(self, user, run)
        held.add(size)
        self._calls[user] += 1
        try:
            yield held
        finally:
            self._release(self._calls, user, 1)
            self._release(self._user_bytes, user, held.size)
            key = id(run)
            left = self._run_bytes.get(key, 0) - held.size
            if left > 0:
                self._run_bytes[key] = left
            else:
                self._run_bytes.pop(key, None)

    def result(self, size: int) -> None:
        """Refuse a downstream result too big to hand to the code, before it is decoded or redacted."""
        if size > self.max_result_bytes:
            raise LimitError(
                "sandbox.max_result_bytes",
                self.max_result_bytes,
                f"the tool answered with {size} bytes; ask for less (filter, paginate or select fields)",
            )

    async def offload(self, work: Callable[..., T], *args: Any, size: int | None, user: str) -> T:
        """`work(*args)` on the event loop when its input is small, else in a thread of `limits.heavy_threads`,
        one at a time per user (so one user's big inputs never take every thread, and the loop keeps its share).
        `size` None is work whose cost does not follow its input (a search over the whole catalog): always a thread."""
        if size is not None and size <= INLINE_BYTES:
            return work(*args)
        if self._heavy is None:
            self._heavy = anyio.CapacityLimiter(self.limits.heavy_threads)
        own = self._heavy_users.get(user)
        if own is None:
            own = self._heavy_users[user] = anyio.Lock()
        self._offloaded[user] += 1
        try:
            async with own:
                return await anyio.to_thread.run_sync(work, *args, limiter=self._heavy)
        finally:
            self._offloaded[user] -= 1  # counts the lock's holder and its waiters: the last one out drops the lock
            if not self._offloaded[user]:
                del self._offloaded[user]
                self._heavy_users.pop(user, None)

    def in_flight(self, user: str) -> dict[str, int]:
        """What `user` holds now (for tests and the load suite)."""
        return {
            "runs": self._runs[user],
            "calls": self._calls[user],
            "bytes": self._user_bytes[user],
            "offloaded": self._offloaded[user],  # work in a thread or waiting for one
        }

    def _take_bytes(self, user: str, run: object, size: int) -> None:
        limits = self.limits
        if self._user_bytes[user] + size > limits.user_bytes_in_flight:
            raise LimitError(
                "limits.user_bytes_in_flight",
                limits.user_bytes_in_flight,
                f"your calls in flight hold {self._user_bytes[user]} bytes and this one needs {size} more; await "
                "some calls first or pass less",
            )
        key = id(run)
        if self._run_bytes.get(key, 0) + size > limits.run_bytes_in_flight:
            raise LimitError(
                "limits.run_bytes_in_flight",
                limits.run_bytes_in_flight,
                f"this run's calls in flight hold {self._run_bytes.get(key, 0)} bytes and this one needs {size} "
                "more; await some calls first or pass less",
            )
        self._user_bytes[user] += size
        self._run_bytes[key] = self._run_bytes.get(key, 0) + size

    @staticmethod
    def _release(counter: Counter[str], user: str, amount: int) -> None:
        counter[user] -= amount
        if counter[user] <= 0:
            del counter[user]
