"""Client-side pacing (``destinations.pacing``) on a fake clock."""

from __future__ import annotations

import pytest

from destinations.pacing import TokenBucket

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
