"""``fake = { ... }`` of a ``driver = "fake"`` host: how its simulated nodes behave.

The fake driver (``farmhand.drivers.fake``) runs no process: its nodes live in the
controller's memory, so a farm of thousands of nodes runs on one machine through the real
controller, store, API and CLI. These options say how those nodes behave, so a farm file can
stage a scale test or a crash storm and a test can make it deterministic (``seed``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from farmhand.spec.types import Duration

MAX_FAKE_HOSTS = 10_000
"""The most hosts one ``count`` may expand into (a typo of three zeros should not freeze the
controller; farms larger than this list several host tables)."""


class FakeOptions(BaseModel):
    """Simulated nodes and their host; every figure is per host table (and so per expanded
    host of a ``count``).

    Numbers are strict: ``crash_rate = "0.1"`` or ``cpu = true`` are errors, not 0.1 and 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    start_latency: Duration = 0.0
    """How long ``start`` takes to answer (the host's own delay, such as an SSH round trip);
    the controller waits for it as it would for a real host."""
    boot_time: Duration = 0.0
    """How long after its start a node refuses health checks (an app still booting)."""
    crash_rate: float = Field(default=0.0, ge=0.0, le=100.0)
    """Crashes per node per second (0.001: a node lives about 1000 s on average). A crashed
    node exits with ``crash_exit_code``; the moment is drawn once at start from the host's
    seeded random generator, so it does not depend on how often the controller looks."""
    crash_exit_code: int = Field(default=1, ge=0, le=255)
    flap_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """The share of health checks a healthy node fails at random (0.05: one check in 20)."""
    cpu: float = Field(default=5.0, ge=0.0)
    """CPU use of each node, in percent of one core."""
    rss_mb: float = Field(default=30.0, ge=0.0)
    """Resident memory of each node, in MiB."""
    connections: int = Field(default=1, ge=0)
    """TCP connections of each node (1: its listening socket, counted as psutil counts it)."""
    cpus: int = Field(default=4, ge=1)
    """The host's CPU count."""
    memory_mb: int = Field(default=8192, ge=1)
    """The host's memory; what is available is this less a tenth (the system) and the nodes'
    ``rss_mb``."""
    load: float = Field(default=0.0, ge=0.0)
    """The host's load average with no node; each node adds ``cpu / 100``."""
    exec_exit_code: int = Field(default=0, ge=0, le=255)
    """What a command run on the host (``exec``) exits with; no command really runs."""
    exec_output: str = ""
    """What such a command writes on its standard output."""
    seed: int = 0
    """Seeds the random draws (crashes, flaps) together with the host's name: the same farm
    file gives the same draws in the same order."""
