"""Client-side pacing shared by the HTTP connectors: a token bucket and a sliding-window limiter.

Both keep a connector under a platform's rate limit before the platform has to say 429. They differ in
what they promise, and a connector picks the one that matches how its platform counts:

- ``TokenBucket``: up to ``burst`` requests at once, then ``rate`` per second. In any window of ``w``
  seconds it lets through at most ``burst + rate * w`` requests, so it fits a platform that documents a
  continuous rate (a leaky bucket: Iterable), or one whose window limit can be met by choosing
  ``burst + rate * window <= limit`` (Braze). With ``burst=1`` it spaces request starts ``1/rate`` apart
  (Attentive, Twilio).
- ``SlidingWindowLimiter``: at most ``count`` requests in any ``span`` seconds, for several windows at
  once. It never exceeds a platform's fixed windows, whatever their alignment, where a bucket as large as
  the burst can send the burst twice inside one window (Klaviyo's per-second and per-minute limits,
  Mailchimp's optional cap).

Both are thread-safe (connectors send from worker threads) and take ``clock`` and ``sleep`` so tests
can run them on a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

__all__ = ["SlidingWindowLimiter", "TokenBucket"]


class TokenBucket:
    """Client-side pacing: up to ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self._tokens, self._clock, self._sleep = self.burst, clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is there; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            self._sleep(wait)
        return wait


class SlidingWindowLimiter:
    """At most ``count`` calls in any ``span`` seconds, for each (count, span) window; thread-safe.

    A sliding window never exceeds a server's fixed windows whatever their alignment, which a token
    bucket as large as the burst does not guarantee. ``margin`` widens each window to absorb latency.
    """

    def __init__(self, windows: Sequence[tuple[int, float]], *, margin: float = 0.05,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._windows = [(count, span * (1 + margin) + margin, deque()) for count, span in windows]
        self._clock, self._sleep, self._lock = clock, sleep, threading.Lock()
        self.waited = 0.0

    @classmethod
    def per_second(cls, rate: float, *, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> SlidingWindowLimiter:
        """A cap of ``rate`` calls per second (``requests_per_second`` in a config), fractional rates included.

        Counted as ``max(1, int(rate))`` calls per ``that / rate`` seconds: 2.5/s is 2 calls in any 0.8 s.
        """
        burst = max(1, int(rate))
        return cls([(burst, burst / rate)], clock=clock, sleep=sleep)

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                wait, full = 0.0, False
                for count, span, stamps in self._windows:
                    while stamps and now - stamps[0] >= span:
                        stamps.popleft()
                    if len(stamps) >= count:  # the oldest call leaves the window in span - (now - oldest) > 0
                        full, wait = True, max(wait, span - (now - stamps[0]))
                if not full:
                    for _, _, stamps in self._windows:
                        stamps.append(now)
                    return
            self.waited += wait
            self._sleep(max(wait, 1e-6))
