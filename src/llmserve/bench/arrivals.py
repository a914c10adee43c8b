"""When each request is sent: a Poisson process, or gamma-distributed gaps (`--burstiness`)."""

from __future__ import annotations

import math

import numpy as np


def arrival_offsets(
    num_requests: int, request_rate: float, burstiness: float, rng: np.random.Generator
) -> list[float]:
    """Seconds from the start at which each request arrives, as `vllm bench serve` draws them.

    Gaps follow a gamma distribution with shape `burstiness` and mean `1 / request_rate`
    (burstiness 1 is a Poisson process; lower is burstier, higher more even). The offsets are then
    scaled so that the last one is exactly `num_requests / request_rate`: the run's mean rate is
    the requested one whatever the seed.
    """
    if math.isinf(request_rate):
        return [0.0] * num_requests
    if math.isinf(burstiness):
        gaps = np.full(num_requests, 1.0 / request_rate)
    else:
        gaps = rng.gamma(
            shape=burstiness, scale=1.0 / (request_rate * burstiness), size=num_requests
        )
    offsets = np.cumsum(gaps)
    offsets *= (num_requests / request_rate) / offsets[-1]
    return [float(offset) for offset in offsets]
