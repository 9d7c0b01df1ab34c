"""What a farm file may say, as pydantic models.

Unknown keys are errors (``extra="forbid"``) because a misspelt key silently ignored is the
costliest kind of typo in an operations tool. Durations stay strings in the file and become
float seconds here, so the rest of farmhand never parses text.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator
from pydantic_core.core_schema import ValidationInfo

from farmhand.registry import DRIVERS, ENGINES, known
from farmhand.spec.assets import AssetsSpec
from farmhand.spec.autoscale import AutoscaleSpec
from farmhand.spec.deploy import DeploySpec, check_workdir
from farmhand.spec.fake import MAX_FAKE_HOSTS, FakeOptions
from farmhand.spec.gate import GateOptions
from farmhand.spec.groups import GroupTable
from farmhand.spec.lbpair import PairFields, attach_members
from farmhand.spec.tls import TlsSpec
from farmhand.spec.types import Duration, Strict

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
PLACEHOLDERS = frozenset({"port", "node", "role", "host"})
MAX_ROLE_NODES = 100_000
"""The most nodes one role may ask for: far above any real farm (Kubernetes stops at 150,000
pods), low enough that a typo such as ``count = 1000000000`` is refused instead of stored."""
MIN_CHECK_INTERVAL = 0.1
MIN_TICK = 0.05


def _no_nul(value: str, what: str) -> str:
    """A NUL cannot pass through exec or an environment: refuse it in the file, not at start."""
    if "\0" in value:
        raise ValueError(f"{what} contains a NUL character")
    return value


def _check_placeholders(text: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as error:
        raise ValueError(f"bad placeholder in command ({error}); write literal braces as {{{{ }}}}") from error
    unknown = sorted(fields - PLACEHOLDERS)
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} (known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))})"
        )


def _at_least(value: float, floor: float, what: str) -> float:
    if value < floor:
        raise ValueError(f"{what} must be at least {floor * 1000:g}ms (it runs that often)")
    return value


class FarmSection(Strict):
    name: str | None = None
    api: str = "127.0.0.1:0"
    """Where the controller's API listens; port 0 picks a free one (written to .farmhand/)."""
    api_hosts: tuple[str, ...] = ()
    """Names clients may use for the API in ``Host`` besides its address and localhost (a
    proxy's name): any other is refused, which defeats DNS rebinding."""
    tick: Duration = 1.0
    restart_backoff: Duration = 1.0
    """First wait after a node of a role failed soon after starting; doubles on each repeat."""
    restart_backoff_max: Duration = 60.0
    host_timeout: Duration = 10.0
    """A host that does not answer for this long is down: its nodes are placed elsewhere."""
    early_failure: Duration = 30.0
    """A node that fails within this long of starting, without having been healthy, counts
    towards its role's backoff."""

    @field_validator("tick")
    @classmethod
    def _tick_floor(cls, value: float) -> float:
        return _at_least(value, MIN_TICK, "tick")


class PreStopSpec(Strict):
    """What runs before a node that is being removed gets its stop signal (scale-in, stop,
    replace, a rollout, a migration): a command on the node's host, or an HTTP call to the
    node, with its own timeout. A Dask worker is retired so that its data moves first, a Spark
    worker decommissioned. Placeholders as in ``command``. A failed or slow hook is reported,
    and the stop goes on: it never keeps a node forever."""

    command: str | None = None
    http: str | None = None
    """A path on the node ("/retire"), called with ``method``."""
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _one_hook(self) -> PreStopSpec:
        if (self.command is None) == (self.http is None):
            raise ValueError('give either command = "..." or http = "/path"')
        if self.http is not None and not self.http.startswith("/"):
            raise ValueError(f'http "{self.http}" must be a path starting with "/"')
        for text in (self.command, self.http):
            if text is not None:
                _no_nul(text, "the hook")
                _check_placeholders(text)
        return self


class HealthSpec(Strict):
    type: Literal["http", "tcp", "exec"] = "http"
    path: str = "/"
    status: StrictInt = Field(default=200, ge=100, le=599)
    command: str | None = None
    interval: Duration = 1.0
    timeout: Duration = 1.0
    rise: StrictInt = Field(default=1, ge=1)
    fall: StrictInt = Field(default=3, ge=1)
    start_grace: Duration = 10.0
    """Failures in this window after a start do not count: slow starters are not killed."""

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, value: float) -> float:
        return _at_least(value, MIN_CHECK_INTERVAL, "a check interval")

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: float) -> float:
        return _at_least(value, 0.001, "a check timeout")

    @model_validator(mode="after")
    def _exec_needs_command(self) -> HealthSpec:
        if self.type == "exec" and not self.command:
            raise ValueError('an exec health check needs command = "..."')
        if not self.path.startswith("/"):
            raise ValueError(f'path "{self.path}" must start with "/"')
        return self


class LbSpec(PairFields):
    """A role's balancer; ``hosts`` and ``vip`` (``PairFields``, spec/lbpair.py) make it a pair."""

    listen: str
    mode: Literal["http", "tcp"] = "http"
    engine: str = "builtin"
    """A name from ``farmhand.registry.ENGINES``, the table ``up`` makes balancers from."""
    balance: Literal["roundrobin", "leastconn", "source"] = "roundrobin"
    workers: StrictInt | None = Field(default=None, ge=1, le=64)
    """Processes sharing the listener (SO_REUSEPORT); default one per core."""
    drain_timeout: Duration = 30.0
    connect_timeout: Duration = 2.0
    client_timeout: Duration = 60.0
    http_request_timeout: Duration = 10.0
    """Longest a client may take to send a whole request head (http mode), however it trickles."""
    server_timeout: Duration = 30.0
    max_request_bytes: StrictInt = Field(default=16 << 20, ge=1024)
    max_response_bytes: StrictInt = Field(default=256 << 20, ge=1024)
    gate: Literal["smtp-delay"] | None = None
    gate_options: GateOptions = Field(default_factory=GateOptions)
    tls: TlsSpec | None = None
    """An HTTPS listener beside ``listen`` (http mode only; see spec/tls.py)."""

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("engine")
    @classmethod
    def _registered_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f'"{value}" is not a load-balancer engine (known: {known(ENGINES)})')
        return value

    @model_validator(mode="after")
    def _tls_fits(self) -> LbSpec:
        if self.tls is not None:
            if self.mode != "http" or self.gate is not None:
                raise ValueError("tls is for http balancers (mode = \"http\", no gate)")
            if self.tls.host_port == self.host_port:
                raise ValueError(f"tls.listen must differ from listen ({self.listen}): plain HTTP goes on being served there")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.listen)


def split_host_port(value: str) -> tuple[str, int]:
    """"127.0.0.1:8080" or "[::1]:8080" -> (host, port); ValueError naming the form wanted."""
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", value.strip())
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f'"{value}" is not an address (use "127.0.0.1:8080")')
    return match.group(1), int(match.group(2))


class RoleSpec(Strict):
    command: str
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    count: StrictInt | None = Field(default=None, ge=0)
    min: StrictInt | None = Field(default=None, ge=0)
    max: StrictInt | None = Field(default=None, ge=0)
    """``count``, ``min`` and ``max`` stay at or below MAX_ROLE_NODES."""
    port: Literal["auto", "none"] | StrictInt = "auto"
    stop_signal: str = "TERM"
    stop_grace: Duration = 10.0
    health: HealthSpec | None = None
    pre_stop: PreStopSpec | None = None
    """Run before a removed node's stop signal (see PreStopSpec); its timeout adds to ``stop_grace``."""
    lb: LbSpec | None = None
    autoscale: AutoscaleSpec | None = None
    """How the role grows and shrinks by itself, within min and max (see spec/autoscale.py)."""
    placement: Literal["spread", "pack"] = "spread"
    spread: str | None = None
    """A host label to spread across (``"zone"``); default: spread across hosts."""
    require: dict[str, str] = Field(default_factory=dict)
    """Host labels a node's host must carry."""
    deploy: DeploySpec | None = None
    """Where `farmhand deploy` takes the role's release from and puts it (spec/deploy.py)."""

    @field_validator("port")
    @classmethod
    def _port_range(cls, value: Any) -> Any:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError(f"{value} is not a port (1-65535, or \"auto\")")
        return value

    @field_validator("stop_signal")
    @classmethod
    def _signal_name(cls, value: str) -> str:
        import signal as _signal

        name = value.upper().removeprefix("SIG")
        if not hasattr(_signal, "SIG" + name):
            raise ValueError(f'"{value}" is not a signal name (use "TERM", "INT", "QUIT"...)')
        return name

    @field_validator("count", "min", "max")
    @classmethod
    def _sane_count(cls, value: int | None) -> int | None:
        if value is not None and value > MAX_ROLE_NODES:
            raise ValueError(f"{value} is more nodes than one role may have (at most {MAX_ROLE_NODES})")
        return value

    @field_validator("env")
    @classmethod
    def _env_is_passable(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable name (letters, digits, _)")
            _no_nul(text, f"the value of {key}")
        return value

    @field_validator("command")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        _no_nul(value, "the command")
        _check_placeholders(value)
        return value

    @model_validator(mode="after")
    def _count_or_bounds(self) -> RoleSpec:
        if self.count is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either count, or min and max, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    @model_validator(mode="after")
    def _deploy_workdir(self) -> RoleSpec:
        if self.deploy is not None:
            check_workdir(self.workdir)
        return self

    @model_validator(mode="after")
    def _autoscale_fits_the_role(self) -> RoleSpec:
        scale = self.autoscale
        if scale is None:
            return self
        if self.min is None or self.max is None:
            raise ValueError("autoscale needs min and max (instead of count)")
        for window in scale.schedule:
            for bound in (window.min, window.max):
                if bound is not None and not self.min <= bound <= self.max:
                    raise ValueError(f"schedule window {window.cron!r}: {bound} is outside the role's "
                                     f"min/max ({self.min}..{self.max})")
        if self.lb is None and scale.uses_lb():
            raise ValueError(f"autoscale on {scale.uses_lb()[0]} needs a load balancer (lb = {{ listen = ... }})")
        return self

    @property
    def initial_count(self) -> int:
        if self.count is not None:
            return self.count
        return self.min if self.min is not None else 1

    @property
    def lower_bound(self) -> int:
        return self.min if self.min is not None else 0

    @property
    def upper_bound(self) -> int | None:
        return self.max

    @property
    def bounds(self) -> str:
        """The file's count, or min and max, as one comparable text ("count=3", "min=1,max=4")."""
        if self.count is not None:
            return f"count={self.count}"
        return f"min={self.min},max={self.max}"

    def clamp(self, wanted: int) -> int:
        """Keep a wanted count inside min/max."""
        wanted = max(wanted, self.lower_bound)
        return min(wanted, self.max) if self.max is not None else wanted

    def fingerprint(self) -> str:
        """A short hash of what a running node was started from (command, env, workdir).

        Changing any of these replaces the role's nodes; changing counts or checks does not.
        """
        material = json.dumps([self.command, sorted(self.env.items()), self.workdir, self.port])
        return hashlib.sha256(material.encode()).hexdigest()[:12]


class Capacity(Strict):
    nodes: StrictInt | None = Field(default=None, ge=0)
    cpu: float | None = Field(default=None, gt=0)
    memory: str | None = None


class HostSpec(Strict):
    """A machine that runs nodes, reached through its driver.

    ``driver`` is a name from ``farmhand.registry.DRIVERS`` (``local``, ``ssh``, ``fake``): the
    spec takes the names from the same table that ``up`` makes drivers from, so a name that
    ``check`` accepts always exists. ``count`` and ``fake`` are for ``driver = "fake"`` only:
    ``count = N`` turns the table ``[hosts.sim]`` into N hosts ``sim-1`` .. ``sim-N`` (each
    its own host with its own driver and these same settings; see ``FarmSpec``), and
    ``fake = { ... }`` says how their simulated nodes behave (``farmhand.spec.fake``).
    """

    driver: str = "local"
    address: str | None = None
    port: StrictInt = Field(default=22, ge=1, le=65535)
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    host_key: str | None = None
    """A pinned public host key ("ssh-ed25519 AAAA..."), instead of known_hosts."""
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: Capacity = Field(default_factory=Capacity)
    base_dir: str | None = None
    weight: StrictInt = Field(default=1, ge=0, le=256)
    """Load-balancer weight of the nodes on this host."""
    count: int | None = Field(default=None, ge=1, le=MAX_FAKE_HOSTS, strict=True)
    """Fake hosts only: how many numbered hosts this table stands for."""
    fake: FakeOptions | None = None
    """Fake hosts only: how the simulated nodes behave (defaults: see ``FakeOptions``)."""

    @field_validator("driver")
    @classmethod
    def _registered_driver(cls, value: str) -> str:
        if value not in DRIVERS:
            raise ValueError(f'"{value}" is not a driver (known: {known(DRIVERS)})')
        return value

    @field_validator("count", "fake")
    @classmethod
    def _only_for_fake_hosts(cls, value: Any, info: ValidationInfo) -> Any:
        driver = info.data.get("driver")
        if value is not None and driver is not None and driver != "fake":
            what = "count" if info.field_name == "count" else "fake = { ... }"
            hint = " (give each machine its own [hosts.NAME] table)" if info.field_name == "count" else ""
            raise ValueError(f'{what} is only for driver = "fake", not "{driver}"{hint}')
        return value

    @model_validator(mode="after")
    def _ssh_needs_address(self) -> HostSpec:
        if self.driver == "ssh" and not self.address:
            raise ValueError("an ssh host needs address = \"...\"")
        return self

    @property
    def fake_options(self) -> FakeOptions:
        """The fake options in force (the defaults when the table gives none)."""
        return self.fake if self.fake is not None else FakeOptions()


class FarmSpec(Strict):
    """A whole farm file. ``hosts`` holds one entry per host: a table with ``count = N``
    (fake hosts) is already expanded into its N numbered hosts, so the rest of farmhand never
    sees a count."""

    farm: FarmSection = Field(default_factory=FarmSection)
    hosts: dict[Annotated[str, Field(pattern=NAME_PATTERN)], HostSpec] = Field(default_factory=dict)
    roles: dict[Annotated[str, Field(pattern=NAME_PATTERN)], RoleSpec] = Field(default_factory=dict)
    groups: GroupTable = Field(default_factory=dict)
    assets: AssetsSpec = Field(default_factory=AssetsSpec)
    """Where `farmhand assets push` puts static files (spec/assets.py)."""

    @field_validator("hosts")
    @classmethod
    def _expand_counted_hosts(cls, hosts: dict[str, HostSpec]) -> dict[str, HostSpec]:
        """``[hosts.sim]`` with ``count = 3`` -> hosts ``sim-1``, ``sim-2``, ``sim-3``."""
        expanded: dict[str, HostSpec] = {}
        for name, host in hosts.items():
            if host.count is None:
                expanded[name] = host
                continue
            member = host.model_copy(update={"count": None})
            for index in range(1, host.count + 1):
                member_name = f"{name}-{index}"
                if member_name in hosts or member_name in expanded:
                    raise ValueError(f"[hosts.{name}] count = {host.count} makes a host {member_name}, "
                                     "which is also named elsewhere in [hosts]; rename one")
                if not re.fullmatch(NAME_PATTERN, member_name):
                    raise ValueError(f"[hosts.{name}] count = {host.count} makes a host {member_name}, "
                                     "a name over 31 characters; shorten the table's name")
                expanded[member_name] = member
        return expanded

    @model_validator(mode="after")
    def _default_host(self) -> FarmSpec:
        if not self.hosts:
            object.__setattr__(self, "hosts", {"local": HostSpec(driver="local")})
        attach_members(self.roles, self.hosts)
        return self

    @property
    def name(self) -> str:
        return self.farm.name or "farm"
