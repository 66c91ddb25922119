"""Unit tests of the operator's settings, CLI and log records (no cluster)."""

from __future__ import annotations

import json
import logging

import kopf
import pytest
from quantzoo_operator.__main__ import config_from, parse_args
from quantzoo_operator.logs import KopfObjectFilter
from quantzoo_operator.settings import FINALIZER, ConfigError, OperatorConfig, configure_kopf


def test_defaults() -> None:
    config = OperatorConfig.from_env({})
    assert config.clusterwide
    assert config.http_port == 8080
    assert config.push_timeout_seconds == 2.0  # the engine's kill budget at the broker is 1.5 s
    assert (config.retry_initial_seconds, config.retry_max_seconds) == (0.2, 2.0)


def test_environment() -> None:
    config = OperatorConfig.from_env(
        {
            "QUANTZOO_OPERATOR_NAMESPACES": "a, b",
            "QUANTZOO_OPERATOR_PORT": "9090",
            "QUANTZOO_OPERATOR_DELETE_HALT_TIMEOUT_SECONDS": "2.5",
            "QUANTZOO_OPERATOR_MONITORING_NAMESPACES": "monitoring",
            "QUANTZOO_OPERATOR_KILL_PATH_WORKERS": "32",
            "LOG_LEVEL": "debug",
            "POD_NAMESPACE": "quantzoo-system",
            "POD_NAME": "quantzoo-operator-abc",
        }
    )
    assert config.namespaces == ("a", "b")
    assert not config.clusterwide
    assert config.http_port == 9090
    assert config.delete_halt_timeout_seconds == 2.5
    assert config.monitoring_namespaces == ("monitoring",)
    assert config.kill_path_workers == 32
    assert config.operator_namespace == "quantzoo-system"
    assert config.instance == "quantzoo-operator-abc"


def test_operand_defaults_from_the_chart() -> None:
    digest = "quantzoo/quantzoo@sha256:" + "0" * 64
    config = OperatorConfig.from_env(
        {
            "QUANTZOO_OPERATOR_DEFAULT_IMAGE": digest,
            "QUANTZOO_OPERATOR_DEFAULT_IMAGE_PULL_POLICY": "Never",
            "QUANTZOO_OPERATOR_OPERAND_PLACEMENT": json.dumps(
                {"priorityClassName": "trading", "tolerations": [{"key": "t", "operator": "Exists"}]}
            ),
        }
    )
    assert (config.default_image, config.default_image_pull_policy) == (digest, "Never")
    assert config.operand_placement.priority_class_name == "trading"
    assert config.operand_placement.tolerations[0].key == "t"
    assert OperatorConfig.from_env({}).default_image == "quantzoo/quantzoo:0.1.0"  # outside the chart


def test_bad_operand_placement_names_the_field() -> None:
    bad = json.dumps({"tolerations": [{"operator": "Sometimes"}]})
    with pytest.raises(
        ConfigError, match=r"OPERAND_PLACEMENT is not a valid Placement: tolerations\.0\.operator"
    ):
        OperatorConfig.from_env({"QUANTZOO_OPERATOR_OPERAND_PLACEMENT": bad})


@pytest.mark.parametrize(
    "env",
    [
        {"QUANTZOO_OPERATOR_DEFAULT_IMAGE_PULL_POLICY": "Sometimes"},
        {"QUANTZOO_OPERATOR_OPERAND_PLACEMENT": "{not json"},
        {"QUANTZOO_OPERATOR_PORT": "http"},
        {"QUANTZOO_OPERATOR_PUSH_TIMEOUT_SECONDS": "0"},
        {"QUANTZOO_OPERATOR_NAMESPACES": "team-*"},
        {"QUANTZOO_OPERATOR_LOG_LEVEL": "chatty"},
        {"QUANTZOO_OPERATOR_PUSH_NETWORKS": "127.0.0.0/8,loopback"},
        {"QUANTZOO_OPERATOR_KILL_PATH_WORKERS": "0"},
    ],
)
def test_bad_settings_are_refused_with_their_name(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        OperatorConfig.from_env(env)


def test_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTZOO_OPERATOR_NAMESPACES", raising=False)
    config = config_from(
        parse_args(["--namespace", "a", "-n", "b,c", "--standalone", "--liveness-port", "18080"])
    )
    assert config.namespaces == ("a", "b", "c")
    assert config.standalone
    assert config.http_port == 18080
    assert config_from(parse_args(["--all-namespaces", "--log-level", "warning"])).clusterwide
    with pytest.raises(SystemExit):
        parse_args(["--namespace", "a", "--all-namespaces"])


def test_kopf_settings_keep_status_clean_and_the_kill_path_out_of_kopf() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorConfig(watch_server_timeout_seconds=45, reconcile_backoff_seconds=3))
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.finalizer == FINALIZER == "trading.quantzoo.io/halt-before-delete"
    assert settings.posting.level == logging.WARNING
    assert settings.watching.server_timeout == 45
    assert isinstance(settings.watching.server_timeout, int)
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.execution.default_backoff == 3
    assert not settings.scanning.disabled  # every namespace: kopf follows the CRDs


def test_listed_namespaces_stay_watched_while_they_terminate() -> None:
    # kopf's namespace scan stops serving a namespace once it is marked for deletion, before the
    # TradingSystems in it are deleted: their finalizer would be left with nobody to clear it
    # (tests/operator/test_delete_namespace_engaged.py shows it against the API server).
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorConfig(namespaces=("team-a", "team-b")))
    assert settings.scanning.disabled


def test_kopf_object_records_carry_namespace_and_name() -> None:
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "Handler succeeded.", None, None)
    record.k8s_ref = {"kind": "TradingSystem", "name": "demo", "namespace": "ns", "uid": "u"}
    record.settings = object()  # kopf attaches its settings; not JSON material
    assert KopfObjectFilter().filter(record)
    assert (record.namespace, record.tradingsystem) == ("ns", "demo")
    assert not hasattr(record, "settings")
    json.dumps({k: v for k, v in vars(record).items() if k in ("namespace", "tradingsystem")})


def test_the_success_of_a_raw_event_handler_is_not_logged_its_failure_is() -> None:
    from quantzoo_operator.logs import QuietEventHandlerSuccess

    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    quiet = QuietEventHandlerSuccess()
    assert not quiet.filter(record(logging.INFO, "Handler 'child-statefulsets' succeeded."))
    assert not quiet.filter(record(logging.INFO, "Handler 'kill-switch-nudge' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'reconcile-create' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'child-statefulsets' failed with an exception."))
