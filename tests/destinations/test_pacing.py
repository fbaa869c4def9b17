"""Client-side pacing (``destinations.pacing``) on a fake clock."""

from __future__ import annotations

import pytest

from destinations.pacing import SlidingWindowLimiter, TokenBucket

# TokenBucket


def test_token_bucket_bursts_then_paces():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    bucket = TokenBucket(rate=10.0, burst=3, clock=lambda: now[0], sleep=sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.1) and slept == [pytest.approx(0.1)]
    assert bucket.acquire() == pytest.approx(0.1)  # past the burst, one request per 1/rate
    now[0] += 10.0
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled, but never above the burst
    assert bucket.acquire() == pytest.approx(0.1)


# SlidingWindowLimiter


def test_sliding_window_never_exceeds_a_fixed_window():
    now = [0.0]
    stamps: list[float] = []
    limiter = SlidingWindowLimiter([(10, 1.0), (150, 60.0)], clock=lambda: now[0],
                                   sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(400):
        limiter.acquire()
        stamps.append(now[0])
    for offset in (0.0, 0.3, 0.7):  # any alignment of the server's windows
        for span, cap in ((1.0, 10), (60.0, 150)):
            counts: dict[int, int] = {}
            for t in stamps:
                counts[int((t + offset) // span)] = counts.get(int((t + offset) // span), 0) + 1
            assert max(counts.values()) <= cap
    assert stamps[-1] > 120  # steady 150/min: 400 calls need more than two minutes
