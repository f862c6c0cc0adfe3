"""The one settings object. Read from the environment once, at the entry point, and passed down.

No other module reads `os.environ`; components take the fields they need.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from store.errors import ConfigError

__all__ = ["SETTINGS_DOC", "Settings"]


_STEP_OUTPUT_MAX_BYTES_CEILING = 64 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    # Where the data lives. With no database_url, an embedded PostgreSQL runs in data_dir/pg.
    database_url: str | None = None
    data_dir: Path = Path(".ordo")
    # Logging.
    log_level: str = "info"
    log_format: str = "auto"  # auto: JSON unless stdout is a terminal; json; console
    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_max_body_bytes: int = 1024 * 1024
    api_rate_limit_per_min: int = 600
    api_workers: int = 2  # the API is CPU-bound Python: one process per core of a small box
    # Workers.
    worker_concurrency: int = 8
    lease_s: float = 30.0
    poll_s: float = 2.0
    shutdown_grace_s: float = 30.0
    rescue_interval_s: float = 5.0
    # Scheduler.
    scheduler_tick_s: float = 1.0
    scheduler_horizon_s: float = 600.0
    scheduler_standby_retry_s: float = 2.0
    run_retention_days: float = 30.0
    # schedule.generate's history (each generation's record and change log); each plant keeps its
    # latest generation whatever its age.
    availability_history_days: float = 90.0
    # Tools.
    tool_catalogs: tuple[Path, ...] = field(default_factory=tuple)
    http_max_response_bytes: int = 10 * 1024 * 1024
    metrics_port: int = 0  # 0: worker and scheduler do not serve /metrics themselves
    metrics_host: str = "127.0.0.1"
    # Webhooks: delays before each retry (comma-separated seconds; about a day in all), the request
    # timeout, requests in flight per worker, the circuit breaker, and registration rules.
    webhook_retry_s: str = "5,30,120,600,1800,3600,7200,14400,28800,43200"
    webhook_timeout_s: float = 15.0
    webhook_concurrency: int = 16
    webhook_breaker_failures: int = 5
    webhook_breaker_cooldown_s: float = 30.0
    webhook_require_https: bool = False
    webhook_secret_overlap_s: float = 86400.0
    # Largest output one pipeline step may record; a run attempt's whole record may take 4 times it.
    step_output_max_bytes: int = 10 * 1024 * 1024
    # Non-public addresses user-supplied URLs may reach (engine/outbound.py): hosts, IPs or CIDRs,
    # each optionally with :port, comma-separated. Empty: public addresses only.
    outbound_allow: str = ""

    def __post_init__(self) -> None:
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"ORDO_LOG_LEVEL must be debug, info, warning or error, not {self.log_level!r}")
        if self.log_format not in {"auto", "json", "console"}:
            raise ConfigError(f"ORDO_LOG_FORMAT must be auto, json or console, not {self.log_format!r}")
        if not 0 < self.api_port < 65536:
            raise ConfigError(f"ORDO_API_PORT must be a TCP port (1-65535), not {self.api_port}")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"ORDO_METRICS_PORT must be a TCP port (1-65535) or 0, not {self.metrics_port}")
        positive = (
            "api_max_body_bytes",
            "api_rate_limit_per_min",
            "api_workers",
            "worker_concurrency",
            "lease_s",
            "poll_s",
            "rescue_interval_s",
            "scheduler_tick_s",
            "scheduler_horizon_s",
            "scheduler_standby_retry_s",
            "run_retention_days",
            "availability_history_days",
            "http_max_response_bytes",
            "webhook_timeout_s",
            "webhook_concurrency",
            "webhook_breaker_failures",
            "webhook_breaker_cooldown_s",
            "step_output_max_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be greater than 0, not {getattr(self, name)}")
        if self.shutdown_grace_s < 0:
            raise ConfigError(f"ORDO_SHUTDOWN_GRACE_S must be 0 or more, not {self.shutdown_grace_s}")
        if self.lease_s < 3:
            raise ConfigError("ORDO_LEASE_S must be at least 3 seconds so heartbeats can renew it in time")
        if self.webhook_secret_overlap_s < 0:
            raise ConfigError(
                f"ORDO_WEBHOOK_SECRET_OVERLAP_S must be 0 or more, not {self.webhook_secret_overlap_s}"
            )
        _retry_delays(self.webhook_retry_s)  # a malformed list is refused at start-up, not at a retry
        # A run's record (up to 4 times this) is one jsonb value, which PostgreSQL caps at 256 MB.
        if not 1024 <= self.step_output_max_bytes <= _STEP_OUTPUT_MAX_BYTES_CEILING:
            raise ConfigError(
                f"ORDO_STEP_OUTPUT_MAX_BYTES must be between 1024 and {_STEP_OUTPUT_MAX_BYTES_CEILING}"
                f" (64 MiB), not {self.step_output_max_bytes}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `env` (default: the process environment), then explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        for f in fields(cls):
            if f.name == "database_url":
                continue
            raw = env.get(_env_name(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """ORDO_WEBHOOK_RETRY_S as seconds: the delay before each retry of a webhook delivery."""
        return _retry_delays(self.webhook_retry_s)


def _retry_delays(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(p) for p in text.split(","))
    except ValueError:
        delays = ()
    if not delays or any(not math.isfinite(d) or d < 0 for d in delays):
        raise ConfigError(
            f"ORDO_WEBHOOK_RETRY_S={text!r}: give the delay before each retry as comma-separated "
            "seconds, e.g. 5,30,120"
        )
    return delays


def _env_name(field_name: str) -> str:
    return "ORDO_" + field_name.upper()


_TYPES: dict[str, type] = {f.name: f.type for f in fields(Settings)}  # type: ignore[misc]


def _parse(name: str, raw: str) -> Any:
    kind = _TYPES[name]
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
        if kind in ("Path", Path):
            return Path(raw)
        if kind in ("bool", bool):
            return _boolean(name, raw)
        if name == "tool_catalogs":
            return tuple(Path(p) for p in raw.split(os.pathsep) if p)
    except ValueError:
        raise ConfigError(f"{_env_name(name)}={raw!r} is not a valid {kind}") from None
    return raw


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{_env_name(name)}={raw!r} must be true or false (1/0, yes/no, on/off)")


# Every setting, for people: (variable, default, meaning), in Markdown. The README's configuration
# table shows exactly these rows (tests/unit/test_settings.py checks both ways).
SETTINGS_DOC: list[tuple[str, str, str]] = [
    ("DATABASE_URL", "unset", "PostgreSQL URL. Unset: an embedded PostgreSQL runs in `ORDO_DATA_DIR/pg`."),
    (
        "ORDO_DATA_DIR",
        ".ordo",
        "Embedded server data. Unset: the nearest `.ordo/` in the current directory or a parent, else a new "
        "`./.ordo` (announced). Every `ordo` process with the same directory shares one server.",
    ),
    ("ORDO_LOG_LEVEL", "info", "`debug`, `info`, `warning` or `error`."),
    ("ORDO_LOG_FORMAT", "auto", "`auto` (JSON unless on a terminal), `json` or `console`."),
    ("ORDO_API_HOST", "127.0.0.1", "Interface the API binds to (`ordo api --host`)."),
    ("ORDO_API_PORT", "8080", "API port (`ordo up --port`, `ordo api --port`); one Ordo instance per port."),
    (
        "ORDO_API_MAX_BODY_BYTES",
        "1048576",
        "Request bodies above this get 413; also the cap of each task document.",
    ),
    (
        "ORDO_API_RATE_LIMIT_PER_MIN",
        "600",
        "Requests per agent per minute before 429, across every API process and host (kept in PostgreSQL).",
    ),
    ("ORDO_API_WORKERS", "2", "API server processes (`ordo api --workers`)."),
    ("ORDO_WORKER_CONCURRENCY", "8", "Runs one worker process executes at once (`--concurrency`)."),
    ("ORDO_LEASE_S", "30", "Lease length in seconds; heartbeats renew running leases well before expiry."),
    ("ORDO_POLL_S", "2", "Idle workers poll this often (seconds) when no NOTIFY arrives."),
    ("ORDO_SHUTDOWN_GRACE_S", "30", "On SIGTERM, how long (seconds) in-flight runs may finish."),
    ("ORDO_RESCUE_INTERVAL_S", "5", "How often (seconds) workers return expired leases to the queue."),
    ("ORDO_SCHEDULER_TICK_S", "1", "Scheduler tick interval (seconds)."),
    (
        "ORDO_SCHEDULER_HORIZON_S",
        "600",
        "How far ahead (seconds) occurrences are written to the queue (`ordo runs --upcoming` lists them).",
    ),
    (
        "ORDO_SCHEDULER_STANDBY_RETRY_S",
        "2",
        "How often (seconds) a standby scheduler tries to become leader.",
    ),
    ("ORDO_RUN_RETENTION_DAYS", "30", "Finished runs older than this (days) are pruned."),
    (
        "ORDO_AVAILABILITY_HISTORY_DAYS",
        "90",
        "`schedule.generate`'s generations (and their change logs) older than this (days) are pruned; "
        "each plant keeps its latest. The generated availability itself stays.",
    ),
    ("ORDO_TOOL_CATALOGS", "unset", "Extra tool catalogs (JSON files, separated by `:`)."),
    ("ORDO_HTTP_MAX_RESPONSE_BYTES", "10485760", "`http.request` refuses larger responses."),
    (
        "ORDO_METRICS_PORT",
        "0",
        "Worker and scheduler processes serve `/metrics`, `/health` and `/health/ready` on this port "
        "(0: off); one port per process (`--metrics-port`); `ordo up` gives its worker the port + 1.",
    ),
    ("ORDO_METRICS_HOST", "127.0.0.1", "Interface those probe servers bind to (`0.0.0.0` in containers)."),
    (
        "ORDO_WEBHOOK_RETRY_S",
        "5,30,120,600,1800,3600,7200,14400,28800,43200",
        "Seconds before each retry of a webhook delivery (about a day in all); then it is dead.",
    ),
    ("ORDO_WEBHOOK_TIMEOUT_S", "15", "Connect and read timeout of a webhook request."),
    ("ORDO_WEBHOOK_CONCURRENCY", "16", "Webhook requests one worker process has in flight at once."),
    ("ORDO_WEBHOOK_BREAKER_FAILURES", "5", "Failed attempts in a row that open an endpoint's breaker."),
    (
        "ORDO_WEBHOOK_BREAKER_COOLDOWN_S",
        "30",
        "Open breaker waits this long before a probe; doubles per failed probe.",
    ),
    ("ORDO_WEBHOOK_REQUIRE_HTTPS", "false", "Refuse webhook URLs that are not `https://`."),
    ("ORDO_WEBHOOK_SECRET_OVERLAP_S", "86400", "After a secret rotation, how long the old secret signs too."),
    (
        "ORDO_STEP_OUTPUT_MAX_BYTES",
        "10485760",
        "Largest output (and rendered input) of one pipeline step, as JSON; a run attempt's whole "
        "record (every step's output, the run's output, errors) may take 4 times this. At most 64 MiB "
        "(a record is one jsonb value, which PostgreSQL caps at 256 MB). Larger: the "
        "run ends `dead` with `OUTPUT_TOO_LARGE`.",
    ),
    (
        "ORDO_OUTBOUND_ALLOW",
        "unset",
        "Non-public addresses that user-supplied URLs (`http.request`, webhooks) may reach: "
        "comma-separated hosts, IPs or CIDRs, each optionally with `:port` (`[IPv6]:port`). Unset: "
        "loopback, private, link-local, multicast, unspecified, reserved and metadata addresses are "
        "refused (see [Outbound calls](#outbound-calls)).",
    ),
]
