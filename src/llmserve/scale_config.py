"""The scale-out sections of the config: replicas, autoscaling, canary variants, the runtime.

Re-exported by `llmserve.config`, which holds `ServerConfig` and the YAML loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RuntimeKind = Literal["local", "ray"]  # engines in this process, or deployments on Ray Serve


@dataclass(frozen=True)
class AutoscalingConfig:
    """Ray Serve's autoscaling of one engine deployment (its `autoscaling_config`)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0  # requests in flight per replica it aims for
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 5.0  # the window Ray averages ongoing requests over

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError("min_replicas must be non-negative")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError("max_replicas must be at least 1 and at least min_replicas")
        for name in ("target_ongoing_requests", "look_back_period_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("upscale_delay_s", "downscale_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")


@dataclass(frozen=True)
class VariantConfig:
    """One variant of a canary model: its own weights, and its share of the keys."""

    name: str  # sent back in the `x-llmserve-variant` header
    source: str
    weight: float
    revision: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.source:
            raise ValueError("a variant needs a name and a source")
        if not self.weight > 0:
            raise ValueError(f"variant {self.name}: weight must be positive")


@dataclass(frozen=True)
class IngressConfig:
    """The HTTP app's replicas on Ray (auth, limits, routes); the local runtime runs one."""

    replicas: int = 1
    num_cpus: float = 0.0  # CPUs each ingress replica declares to Ray (it mostly waits)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.num_cpus < 0:
            raise ValueError("num_cpus must be non-negative")


@dataclass(frozen=True)
class RayConfig:
    """Where the Ray runtime runs: an existing cluster, or a local head it starts and stops."""

    address: str | None = None  # e.g. "ray://host:10001" or "auto"; None starts a local head
    num_cpus: int | None = None  # CPUs of a local head; None: this machine's
    object_store_mb: int = 200  # object store of a local head (Serve passes small messages)

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError("num_cpus must be at least 1")
        if self.object_store_mb < 80:  # NOTE: Ray refuses an object store below ~75 MB
            raise ValueError("object_store_mb must be at least 80")


def check_unique(what: str, names: list[str]) -> None:
    """Raise ValueError naming the names in `names` given more than once."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(duplicates)}")
