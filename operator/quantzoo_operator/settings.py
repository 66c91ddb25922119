"""The operator's settings: one typed object, read from the environment and the command line.

`OperatorConfig` is what QuantZoo's own code reads. `configure_kopf` maps it onto kopf's
`OperatorSettings` in the one startup handler (handlers/lifecycle.py), so every kopf knob the operator
relies on is set in one place:
- progress and diff-base in ANNOTATIONS (`trading.quantzoo.io/...`), so `status` holds only what a person
  reads: observedGeneration, phase, conditions, killSwitch, engine;
- the finalizer is domain-qualified (`trading.quantzoo.io/halt-before-delete`);
- kopf posts only warnings as Events (QuantZoo posts its own, worded for the person on call);
- watch streams have explicit server/client timeouts (a silent stream is re-opened, not trusted);
- a failed reconcile retries after seconds, not kopf's default minute.

Environment (every variable optional; the command line wins where both exist):
  QUANTZOO_OPERATOR_NAMESPACES        comma-separated namespaces to watch (default: all)
  QUANTZOO_OPERATOR_PORT              port of /healthz and /metrics (default 8080)
  QUANTZOO_OPERATOR_HOST              address they listen on (default 0.0.0.0)
  QUANTZOO_OPERATOR_LOG_LEVEL         DEBUG, INFO, WARNING, ERROR (default INFO; LOG_LEVEL also works)
  QUANTZOO_OPERATOR_PUSH_TIMEOUT_SECONDS        deadline of one kill-switch push (default 2: the engine
                                                answers once working orders are cancelled, within 1.5 s)
  QUANTZOO_OPERATOR_RETRY_INITIAL_SECONDS       first retry delay of an unacknowledged push (0.2)
  QUANTZOO_OPERATOR_RETRY_MAX_SECONDS           longest retry delay (2)
  QUANTZOO_OPERATOR_KEEP_HALT_INTERVAL_SECONDS  while engaged, how often replicas are re-checked (5)
  QUANTZOO_OPERATOR_DELETE_HALT_TIMEOUT_SECONDS how long deletion waits for an unreachable engine (30)
  QUANTZOO_OPERATOR_KILL_PATH_WORKERS           API threads and connections kept for the kill path
                                                alone (16): a kill-all of many systems makes ~2 API
                                                calls per system (list engine pods, write status)
  QUANTZOO_OPERATOR_RECONCILE_BACKOFF_SECONDS   first retry delay of a failed reconcile (5); doubles while
                                                it keeps failing, up to the resync interval
  QUANTZOO_OPERATOR_RESYNC_INTERVAL_SECONDS     periodic full reconcile, restores e.g. deleted Secrets (300)
  QUANTZOO_OPERATOR_WATCH_SERVER_TIMEOUT_SECONDS server-side timeout of each watch request (60)
  QUANTZOO_OPERATOR_MONITORING_NAMESPACES       namespaces whose pods may scrape engine/safety ports
  QUANTZOO_OPERATOR_PUSH_NETWORKS               comma-separated CIDRs the operator may push kill-switch
                                                commands to (default: any). The local control plane's
                                                simulated pods have made-up IPs; tests, the demo and the
                                                benchmarks set 127.0.0.0/8 so those are never dialled.
  QUANTZOO_OPERATOR_DEFAULT_IMAGE              image of engine and safety pods whose TradingSystem sets
                                                none (the chart sets its own image: repo:tag or repo@digest)
  QUANTZOO_OPERATOR_DEFAULT_IMAGE_PULL_POLICY  their pull policy when unset (the chart's image.pullPolicy)
  QUANTZOO_OPERATOR_OPERAND_PLACEMENT          JSON of a quantzoo_api.types.Placement (imagePullSecrets,
                                                nodeSelector, tolerations, affinity, priorityClassName):
                                                defaults for each field a TradingSystem leaves unset
  POD_NAMESPACE, POD_NAME             the operator's own namespace and pod (downward API): the engine's
                                      NetworkPolicy admits the operator from that namespace only
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version

from pydantic import ValidationError
from quantzoo_api import GROUP
from quantzoo_api.types import Placement

FINALIZER = "trading.quantzoo.io/halt-before-delete"
KILL_SWITCH_FIELD = "spec.killSwitch"
ANNOTATION_PREFIX = "trading.quantzoo.io"
DIFF_BASE_KEY = "last-handled-configuration"  # kopf's diff base, a digest of the handled spec (diffbase.py)
ENV_PREFIX = "QUANTZOO_OPERATOR_"
DEFAULT_IMAGE = f"quantzoo/quantzoo:{version('quantzoo')}"
"""Only when run outside the chart (tests, a laptop): the chart always passes its own image."""
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


class ConfigError(ValueError):
    """A setting has a value the operator cannot use; the message names it."""


def _split(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means every namespace."""
    standalone: bool = False
    """Skip kopf peering (one operator replica)."""
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    log_level: str = "INFO"
    operator_namespace: str | None = None
    instance: str = field(default_factory=socket.gethostname)
    monitoring_namespaces: tuple[str, ...] = ()
    default_image: str = DEFAULT_IMAGE
    default_image_pull_policy: str = "IfNotPresent"
    operand_placement: Placement = field(default_factory=Placement)

    # Kill-switch propagation.
    push_timeout_seconds: float = 2.0
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 2.0
    keep_halt_interval_seconds: float = 5.0
    delete_halt_timeout_seconds: float = 30.0
    push_networks: tuple[str, ...] = ()
    """CIDRs a push may go to; empty means anywhere (a pod IP in the cluster network)."""
    kill_path_workers: int = 16
    """Threads (each with its own API connection) reserved for the kill path's API calls."""

    # Reconcile and watching.
    reconcile_backoff_seconds: float = 5.0
    resync_interval_seconds: float = 300.0
    consistency_timeout_seconds: float = 5.0
    watch_server_timeout_seconds: float = 60.0
    watch_connect_timeout_seconds: float = 5.0
    request_timeout_seconds: float = 30.0

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def watch_client_timeout_seconds(self) -> float:
        """The client gives up a little after the server should have closed the stream."""
        return self.watch_server_timeout_seconds + 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if f.name == "http_port":
                raw = env.get(ENV_PREFIX + "PORT")
            elif f.name == "http_host":
                raw = env.get(ENV_PREFIX + "HOST")
            elif f.name == "log_level":
                raw = env.get(ENV_PREFIX + "LOG_LEVEL") or env.get("LOG_LEVEL")
            elif f.name == "operator_namespace":
                raw = env.get("POD_NAMESPACE")
            elif f.name == "instance":
                raw = env.get("POD_NAME")
            if raw in (None, ""):
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        return cls(**values).validated()

    def replace(self, **changes: object) -> OperatorConfig:
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> OperatorConfig:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_seconds") and value <= 0:
                raise ConfigError(f"{f.name} must be positive, got {value}")
        if not 1 <= self.kill_path_workers <= 256:
            raise ConfigError(f"kill_path_workers must be 1..256, got {self.kill_path_workers}")
        if not 0 < self.http_port < 65536:
            raise ConfigError(f"port {self.http_port} is out of range")
        if self.retry_initial_seconds > self.retry_max_seconds:
            raise ConfigError("retry_initial_seconds cannot exceed retry_max_seconds")
        if logging.getLevelName(self.log_level.upper()) not in (10, 20, 30, 40, 50):
            raise ConfigError(f"unknown log level {self.log_level!r}")
        for cidr in self.push_networks:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ConfigError(f"push network {cidr!r} is not a CIDR (e.g. 127.0.0.0/8)") from None
        if not self.default_image or len(self.default_image) > 512 or not self.default_image.isprintable():
            raise ConfigError(f"default image {self.default_image!r} is not an image reference")
        if self.default_image_pull_policy not in PULL_POLICIES:
            raise ConfigError(
                f"default image pull policy {self.default_image_pull_policy!r} is not one of {PULL_POLICIES}"
            )
        for ns in self.namespaces:
            if any(c in ns for c in "*?[]!"):
                raise ConfigError(f"namespace {ns!r}: patterns are not supported, name namespaces exactly")
        return self


def _parse(name: str, kind: object, raw: str) -> object:
    try:
        if kind in ("tuple[str, ...]",):
            return _split(raw)
        if kind in ("bool",):
            if raw.strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.strip().lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind in ("Placement",):
            return Placement.model_validate_json(raw)
        if kind in ("int",):
            return int(raw)
        if kind in ("float",):
            return float(raw)
        return raw
    except ValidationError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} is not a valid {kind}: {_first_error(exc)}") from None
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"


def configure_kopf(settings: object, config: OperatorConfig) -> None:
    """Set kopf's `OperatorSettings` from the operator's config (called once, at startup)."""
    import kopf  # kopf is heavy to import; builders and tests of pure code do not need it

    assert isinstance(settings, kopf.OperatorSettings)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    # spec.killSwitch is not part of what kopf reconciles: the propagator has its own watch, and a kill
    # switch changes no child. Left in, every engage cost two kopf patches of the TradingSystem and a
    # reconcile -- a kill-all of a hundred systems queued 300 writes behind the kill on the API server.
    # A digest of the essence, not kopf's copy of the spec, in the annotation (diffbase.py).
    from quantzoo_operator.diffbase import DigestAnnotationsDiffBaseStorage

    # Only our own kinds have create/update handlers or timers: no essence for the children's events.
    settings.persistence.diffbase_storage = DigestAnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key=DIFF_BASE_KEY, ignored_fields=[KILL_SWITCH_FIELD], groups=[GROUP]
    )
    settings.persistence.finalizer = FINALIZER
    settings.persistence.consistency_timeout = config.consistency_timeout_seconds
    # QuantZoo posts its own Events (events.py); kopf adds only its warnings and errors.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "quantzoo-operator"
    settings.posting.reporting_instance = config.instance
    # The API server wants whole seconds (`timeoutSeconds=60.0` is refused).
    settings.watching.server_timeout = int(config.watch_server_timeout_seconds)
    settings.watching.client_timeout = config.watch_client_timeout_seconds
    settings.watching.connect_timeout = config.watch_connect_timeout_seconds
    settings.networking.request_timeout = config.request_timeout_seconds
    # kopf's (aiohttp's) connect timeout also bounds the wait for a free pooled connection: at 5 s, a
    # creation burst of 300 systems timed out kopf's own patches of the TradingSystems and 254 of them
    # were reconciled twice (bench/results, README "Scale and cost"); a request's own timeout bounds it.
    settings.networking.connect_timeout = config.request_timeout_seconds
    settings.execution.default_backoff = config.reconcile_backoff_seconds
    settings.peering.standalone = settings.peering.standalone or config.standalone
    # Listed namespaces are exact names (validated above). kopf's namespace scan drops a namespace from its
    # watches as soon as the namespace controller marks it for deletion, before that controller deletes the
    # TradingSystems in it: their finalizer then had nobody to clear it and the namespace never finished
    # deleting. So the listed namespaces are served for as long as the operator runs (kopf still lists the
    # CRDs once at startup; the chart installs them first).
    if not config.clusterwide:
        settings.scanning.disabled = True
