"""`BatchWriter`: a bounded queue drained by one background thread that writes items in batches.

It keeps network I/O off the caller's thread (the event loop): `put` only appends to a deque under a lock held
for microseconds. The thread takes up to `batch_size` items at a time (whatever queued up while the previous batch
was being written), hands them to `write`, and on a retryable error (the database went away, a lock wait timed out)
sleeps with exponential backoff and retries the same batch until it succeeds or the writer is closed with a
deadline. `write` must therefore be idempotent for a batch it may already have committed (the PostgreSQL store
inserts with unique event ids and ON CONFLICT DO NOTHING).

A batch the destination rejects for good (any other error) is written again one item at a time, so only the items
it rejects on their own are lost, never their neighbours: one bad event cannot take the records queued with it (up
to `batch_size`, e.g. everything queued during an outage) down with it. Rejected items are counted in `lost` and
logged by count and error class only, never by content.

What can be lost, and it is bounded: items refused by `put` while `capacity` items are pending (counted in
`dropped`, logged), items the destination rejects on their own (counted in `lost`, logged), the pending items when
the process crashes (queued or in flight: at most `capacity`), and whatever `close` could not write before its
deadline (counted in `lost`, logged). `close` returns within its `timeout` plus `CLOSE_GRACE_S`: at the deadline it
stops retrying and calls `interrupt` (the store cancels the statement in flight); should the thread still be stuck
after the grace period, every pending item is given up on (counted, logged) and the thread is left to end on its
own, its later outcome no longer counted. The thread calls `finish` as it ends, so the resources `write` uses (a
connection) are released by the thread that uses them, never concurrently with a write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger("portal_mcp.control.audit")

_DROP_LOG_INTERVAL_S = 10.0
"""While items are being dropped, one error line per this many seconds (with the running count)."""
CLOSE_GRACE_S = 1.0
"""How long `close` waits, after its deadline and `interrupt`, for the thread to end before abandoning it."""


class _Outcome:
    """What became of one attempt to write a batch (besides the error that rejected it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_WRITTEN = _Outcome("written")
_GAVE_UP = _Outcome("gave up")


def error_kind(exc: BaseException) -> str:
    """The class of an error (and its SQLSTATE when it has one), without its message: messages can quote values."""
    code = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


class BatchWriter(Generic[T]):
    """Writes `put` items through `write(batch)` on a daemon thread; `close` writes what is left, then stops."""

    def __init__(
        self,
        write: Callable[[list[T]], None],
        *,
        describe: str,
        retryable: Callable[[Exception], bool],
        capacity: int = 10_000,
        batch_size: int = 500,
        backoff: tuple[float, float] = (0.05, 5.0),
        linger: float = 0.005,
        interrupt: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
    ) -> None:
        """`describe` names the destination in log lines; `retryable(error)` says whether an error from `write` is
        worth retrying (connection loss); any other error rejects the batch, whose items are then written one by
        one so that only those rejected on their own are lost. `linger` is how long the thread waits for a batch to
        fill once the first item arrived (latency for fewer round trips). `interrupt` is called (on a short-lived
        thread of its own) when `close` reaches its deadline with a write in flight, to make it fail now; `finish`
        is called on the writer thread as it ends.
        """
        self._write = write
        self._describe = describe
        self._retryable = retryable
        self.capacity = capacity
        self._batch_size = batch_size
        self._backoff = backoff
        self._linger = linger
        self._interrupt = interrupt
        self._finish = finish
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._give_up = threading.Event()
        self._abandoned = False
        """`close` gave up on the thread (stuck past the grace period): nothing it does later is counted."""
        self._accepted = 0
        self._finished = 0
        """Accepted items that were written or given up on; `flush` waits for it to reach `_accepted`."""
        self.written = 0
        self.dropped = 0
        """Items refused by `put` because `capacity` items were pending."""
        self._reported_drop = -_DROP_LOG_INTERVAL_S
        self.lost = 0
        """Accepted items never written: rejected by the store on their own, or left when `close` gave up."""
        self._thread = threading.Thread(target=self._run, name=f"audit writer {describe}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items accepted but not yet written (queued or in flight)."""
        with self._cond:
            return self._accepted - self._finished

    @property
    def running(self) -> bool:
        """Whether the writer thread is still alive (False once `close` returned, unless it abandoned the thread)."""
        return self._thread.is_alive()

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
        """Write everything queued, waiting at most `timeout` seconds, then stop; returns how many were lost in all.

        While the destination is unreachable (or a write is blocked) the thread keeps retrying until the deadline;
        then it stops, the write in flight is interrupted, and what is still pending is counted in `lost` and
        logged. Returns within `timeout` + `CLOSE_GRACE_S` whatever the destination does. Closing twice is harmless.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._give_up.set()
            with self._cond:
                self._cond.notify_all()
            if self._interrupt is not None:
                # On a thread of its own: interrupting may itself wait on the network, and close has a deadline.
                threading.Thread(
                    target=self._interrupt_quietly, name=f"audit writer {self._describe} interrupt", daemon=True
                ).start()
            self._thread.join(CLOSE_GRACE_S)
        with self._cond:
            if self._thread.is_alive() and not self._abandoned:
                given_up = self._accepted - self._finished
                self._queue.clear()
                self._settle(lost=given_up, log=False)
                self._abandoned = True
                logger.error(
                    "audit writer %s: still blocked %.1fs after the close deadline; gave up on %d events (a write in "
                    "flight may still commit) and left its thread to end on its own",
                    self._describe,
                    CLOSE_GRACE_S,
                    given_up,
                )
            elif left := len(self._queue):
                self._queue.clear()
                self._settle(lost=left)
            return self.lost

    def _interrupt_quietly(self) -> None:
        assert self._interrupt is not None
        try:
            self._interrupt()
        except Exception as exc:
            logger.warning(
                "audit writer %s: cannot interrupt the write in flight (%s)", self._describe, error_kind(exc)
            )

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
                self._write_batch(batch)
        except BaseException:  # never let the thread die silently: the queue would only fill up
            logger.exception("audit writer %s stopped; events recorded from now on are dropped", self._describe)
            with self._cond:
                self._closing = True
                left = len(self._queue)
                self._queue.clear()
                self._settle(lost=left)
        finally:
            if self._finish is not None:
                try:
                    self._finish()
                except Exception as exc:
                    logger.warning("audit writer %s: cleaning up failed (%s)", self._describe, error_kind(exc))

    def _write_batch(self, batch: list[T]) -> None:
        """Write one batch; if the destination rejects it, write its items one by one and lose only the rejected."""
        outcome = self._write_until_done(batch)
        if outcome is _WRITTEN:
            self._settle(written=len(batch))
            return
        if not isinstance(outcome, Exception):  # gave up at the close deadline
            self._settle(lost=len(batch))
            return
        # Rejected for good: write the items one by one, so that only those rejected on their own are lost.
        rejected: Counter[str] = Counter()
        written = 0
        if len(batch) == 1:
            rejected[error_kind(outcome)] += 1
        else:
            for index, item in enumerate(batch):
                if self._give_up.is_set():
                    self._settle(lost=len(batch) - index)
                    break
                result = self._write_until_done([item])
                if isinstance(result, Exception):
                    rejected[error_kind(result)] += 1
                elif result is _WRITTEN:
                    written += 1
                    self._settle(written=1)
                else:
                    self._settle(lost=1)
        if rejected:
            count = sum(rejected.values())
            logger.error(
                "audit writer %s: the store rejected %d of a batch of %d events (%s); %s; the rejected events are lost",
                self._describe,
                count,
                len(batch),
                ", ".join(f"{kind} x{n}" for kind, n in sorted(rejected.items())),
                f"wrote the other {written} one by one" if len(batch) > 1 else "it was alone in its batch",
            )
            self._settle(lost=count, log=False)
        elif written == len(batch):
            logger.warning(
                "audit writer %s: the store rejected a batch of %d events (%s) but took each of them on its own",
                self._describe,
                len(batch),
                error_kind(outcome),
            )

    def _write_until_done(self, batch: list[T]) -> _Outcome | Exception:
        """`write(batch)`, retrying with backoff while the error is retryable; the error that rejected it, if any."""
        delay, longest = self._backoff
        outage: float | None = None
        while True:
            try:
                self._write(batch)
            except Exception as exc:
                if not self._retryable(exc):
                    return exc
                if outage is None:
                    outage = time.monotonic()
                    logger.warning(
                        "audit writer %s: cannot write (%s); keeping %d events queued and retrying with backoff",
                        self._describe,
                        " ".join(str(exc).split()),
                        self.pending,
                    )
                if self._give_up.wait(delay):
                    return _GAVE_UP
                delay = min(delay * 2, longest)
                continue
            if outage is not None:
                logger.warning(
                    "audit writer %s: writing again after %.1fs; %d events still queued",
                    self._describe,
                    time.monotonic() - outage,
                    self.pending - len(batch),
                )
            return _WRITTEN

    def _settle(self, *, written: int = 0, lost: int = 0, log: bool = True) -> None:
        """Count `written` and `lost` accepted items as finished (not once `close` abandoned the thread)."""
        with self._cond:
            if self._abandoned:
                return
            self.written += written
            self.lost += lost
            self._finished += written + lost
            self._cond.notify_all()
        if lost and log:
            logger.error("audit writer %s: %d events could not be written and are lost", self._describe, lost)
