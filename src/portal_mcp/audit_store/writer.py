"""`BatchWriter`: a bounded queue drained by one background thread that writes items in batches.

It keeps network I/O off the caller's thread (the event loop): `put` only appends to a deque under a lock held
for microseconds. The thread takes up to `batch_size` items at a time (whatever queued up while the previous batch
was being written), hands them to `write`, and on a retryable error (the database went away) sleeps with
exponential backoff and retries the same batch until it succeeds or the writer is closed with a deadline. `write`
must therefore be idempotent for a batch it may already have committed (the PostgreSQL store inserts with unique
event ids and ON CONFLICT DO NOTHING).

What can be lost, and it is bounded: items refused by `put` while `capacity` items are pending (counted in
`dropped`, logged), the pending items when the process crashes (queued or in flight: at most `capacity`), and
whatever `close` could not write before its deadline (counted in `lost`, logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger("portal_mcp.audit")

_DROP_LOG_INTERVAL_S = 10.0
"""While items are being dropped, one error line per this many seconds (with the running count)."""


class BatchWriter(Generic[T]):
    """Writes `put` items through `write(batch)` on a daemon thread; `close` writes what is left, then stops."""

    def __init__(
        self,
        write: Callable[[list[T]], None],
        *,
        describe: str,
        retryable: tuple[type[BaseException], ...],
        capacity: int = 10_000,
        batch_size: int = 500,
        backoff: tuple[float, float] = (0.05, 5.0),
        linger: float = 0.005,
    ) -> None:
        """`describe` names the destination in log lines; `retryable` are the errors worth retrying (connection
        loss); any other error from `write` drops that batch with an error log, so one bad batch cannot wedge it.
        `linger` is how long the thread waits for a batch to fill once the first item arrived (latency for fewer
        round trips).
        """
        self._write = write
        self._describe = describe
        self._retryable = retryable
        self.capacity = capacity
        self._batch_size = batch_size
        self._backoff = backoff
        self._linger = linger
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._give_up = threading.Event()
        self._accepted = 0
        self._finished = 0
        """Accepted items that were written or given up on; `flush` waits for it to reach `_accepted`."""
        self.written = 0
        self.dropped = 0
        """Items refused by `put` because `capacity` items were pending."""
        self._reported_drop = -_DROP_LOG_INTERVAL_S
        self.lost = 0
        """Accepted items never written: a batch `write` rejected, or what was left when `close` gave up."""
        self._thread = threading.Thread(target=self._run, name=f"audit writer {describe}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items accepted but not yet written (queued or in flight)."""
        with self._cond:
            return self._accepted - self._finished

    def put(self, item: T) -> bool:
        """Queue one item without blocking; False (and counted in `dropped`) when `capacity` items are pending
        (queued or in flight) or the writer is closed."""
        with self._cond:
            if self._closing or self._accepted - self._finished >= self.capacity:
                self.dropped += 1
                now = time.monotonic()
                report = not self._closing and now - self._reported_drop >= _DROP_LOG_INTERVAL_S
                if report:
                    self._reported_drop = now
            else:
                self._queue.append(item)
                self._accepted += 1
                if len(self._queue) == 1 or len(self._queue) == self._batch_size:  # the only states it waits on
                    self._cond.notify_all()
                return True
        if report:
            logger.error(
                "audit writer %s: the queue is full (%d events); dropping events until it drains (%d dropped so far)",
                self._describe,
                self.capacity,
                self.dropped,
            )
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item accepted before this call is written (or given up on); False on timeout."""
        with self._cond:
            target = self._accepted
            return self._cond.wait_for(lambda: self._finished >= target, timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Write everything queued, waiting at most `timeout` seconds, then stop; returns how many were lost.

        While the destination is unreachable the thread keeps retrying until the deadline; what is then still
        queued is counted in `lost` and logged. Closing twice is harmless.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._give_up.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join(timeout=max(1.0, timeout / 2))
        with self._cond:
            left = len(self._queue)
            if left and not self._thread.is_alive():
                self._queue.clear()
                self._count_lost(left)
            lost = self.lost
        return lost

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if self._linger and len(self._queue) < self._batch_size and not self._closing:
                        # Let a few more arrive: one insert for many events rather than one round trip each.
                        self._cond.wait_for(lambda: len(self._queue) >= self._batch_size or self._closing, self._linger)
                    if not self._queue or self._give_up.is_set():
                        return
                    batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                self._write_with_retry(batch)
        except BaseException:  # never let the thread die silently: the queue would only fill up
            logger.exception("audit writer %s stopped; events recorded from now on are dropped", self._describe)
            with self._cond:
                self._closing = True
                left = len(self._queue)
                self._queue.clear()
                self._count_lost(left)

    def _write_with_retry(self, batch: list[T]) -> None:
        delay, longest = self._backoff
        outage: float | None = None
        while True:
            try:
                self._write(batch)
            except self._retryable as exc:
                if outage is None:
                    outage = time.monotonic()
                    logger.warning(
                        "audit writer %s: cannot write (%s); keeping %d events queued and retrying with backoff",
                        self._describe,
                        " ".join(str(exc).split()),
                        self.pending,
                    )
                if self._give_up.wait(delay):
                    with self._cond:
                        self._count_lost(len(batch))
                    return
                delay = min(delay * 2, longest)
                continue
            except Exception as exc:
                logger.error(
                    "audit writer %s: dropped a batch of %d events the store rejected: %s",
                    self._describe,
                    len(batch),
                    " ".join(str(exc).split()),
                )
                with self._cond:
                    self._count_lost(len(batch))
                return
            if outage is not None:
                logger.warning(
                    "audit writer %s: writing again after %.1fs; %d events still queued",
                    self._describe,
                    time.monotonic() - outage,
                    self.pending - len(batch),
                )
            with self._cond:
                self.written += len(batch)
                self._finished += len(batch)
                self._cond.notify_all()
            return

    def _count_lost(self, count: int) -> None:
        """Give up on `count` accepted items; the caller holds the condition."""
        if count:
            self.lost += count
            self._finished += count
            self._cond.notify_all()
            logger.error("audit writer %s: %d events could not be written and are lost", self._describe, count)
