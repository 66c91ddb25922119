"""The operator's parts, built once at startup and handed to every handler through kopf's memo."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quantzoo_operator.builders import BuildOptions
from quantzoo_operator.events import EventRecorder
from quantzoo_operator.health import HealthServer
from quantzoo_operator.killswitch.propagator import Propagator
from quantzoo_operator.killswitch.pushing import Pusher
from quantzoo_operator.kube import Kube, new_api_client
from quantzoo_operator.metrics import METRICS, OperatorMetrics
from quantzoo_operator.reconciler import Reconciler
from quantzoo_operator.settings import OperatorConfig
from quantzoo_operator.status_writer import StatusWriter

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: OperatorConfig
    kube: Kube
    metrics: OperatorMetrics
    recorder: EventRecorder
    status: StatusWriter
    reconciler: Reconciler
    pusher: Pusher
    propagator: Propagator
    health: HealthServer

    @classmethod
    def build(cls, config: OperatorConfig, metrics: OperatorMetrics = METRICS) -> Runtime:
        kube = Kube(
            # One pooled connection per kill-path thread, so no kill-path call waits for a connection.
            lambda: new_api_client(max(16, config.kill_path_workers)),
            kill_workers=config.kill_path_workers,
            request_timeout=config.request_timeout_seconds,
        )
        recorder = EventRecorder(kube, config.instance)
        status_writer = StatusWriter(kube, recorder)
        options = BuildOptions(
            operator_namespace=config.operator_namespace,
            monitoring_namespaces=config.monitoring_namespaces,
            default_image=config.default_image,
            default_image_pull_policy=config.default_image_pull_policy,
            operand_placement=config.operand_placement,
        )
        reconciler = Reconciler(kube, recorder, status_writer, options, status_writer.workloads)
        pusher = Pusher(kube, push_timeout=config.push_timeout_seconds, networks=config.push_networks)
        propagator = Propagator(
            config,
            kube,
            pusher,
            recorder,
            metrics,
            status_writer.refresh,
            lambda: new_api_client(max(4, len(config.namespaces) + 2)),  # one connection per watch
        )
        health = HealthServer(config.http_host, config.http_port, propagator.health, metrics.exposition)
        return cls(config, kube, metrics, recorder, status_writer, reconciler, pusher, propagator, health)

    async def start(self) -> None:
        await self.health.start()
        await self.propagator.start()

    async def stop(self) -> None:
        await self.propagator.stop()
        await self.recorder.drain()
        await self.pusher.close()
        await self.health.stop()
        self.kube.close()
