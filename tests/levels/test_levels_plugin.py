"""`kubectl quantzoo kill | release --account A | --namespace NS | --firm` (issue #13): which level the flags
name (pure), and against the real API server: the desk's halt created on first use and engaged by one
write, never refused (defaults), released only naming its engagement, an account's switch."""

from __future__ import annotations

import io

import pytest
from quantzoo_api.killswitch import kill_switch_of
from quantzoo_api.levels import KillLevel
from quantzoo_safety.kubectl_plugin import main, parse_args

from tests.levels.halts import create_account, delete_halt, get_halt


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["kill", "--firm"], KillLevel.FIRM),
        (["kill", "-n", "desk1"], KillLevel.DESK),
        (["kill", "--account", "main", "-n", "desk1"], KillLevel.ACCOUNT),
        (["release", "--firm", "--reason", "fixed"], KillLevel.FIRM),
        (["kill", "demo", "-n", "desk1"], None),
        (["kill", "--all", "-n", "desk1"], None),
    ],
)
def test_the_flags_name_the_level(argv: list[str], level: KillLevel | None) -> None:
    assert parse_args(argv).level == level


@pytest.mark.parametrize(
    "argv",
    [
        ["kill", "--firm", "-n", "x"],
        ["kill", "--firm", "--account", "a"],
        ["kill", "demo", "--firm"],
        ["kill"],
    ],
)
def test_ambiguous_targets_are_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def run(cluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--kubeconfig", str(cluster.kubeconfig), *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_desk_kill_creates_the_halt_and_release_names_its_engagement(cluster, kube_api, namespace) -> None:
    name = f"desk-{namespace}"
    try:
        code, out, err = run(cluster, "kill", "--namespace", namespace)  # no reason: defaults, not refused
        assert code == 0, err
        assert f"tradinghalt {name} (Desk {namespace}): kill switch ENGAGED (Halt)" in out
        ks = kill_switch_of(get_halt(kube_api, name))
        assert ks["engaged"] is True
        assert ks["reason"] == "no reason given"
        assert ks["source"] == "kubectl"
        code, out, _ = run(cluster, "kill", "-n", namespace, "--close-positions", "--reason", "again")
        assert code == 0
        assert "already engaged" in out
        assert "escalated closePositions" in out
        code, out, err = run(
            cluster, "release", "-n", namespace, "--reason", "desk fixed", "--operator", "rita"
        )
        assert code == 0, err
        released = kill_switch_of(get_halt(kube_api, name))
        assert released["engaged"] is False
        assert released["release"]["engagedAt"] == ks["engagedAt"]
        code, _, err = run(cluster, "release", "-n", namespace, "--reason", "twice")
        assert code == 1
        assert "not engaged; nothing to release" in err
    finally:
        delete_halt(kube_api, name)


def test_account_kill_and_an_unknown_account(cluster, kube_api, namespace) -> None:
    create_account(kube_api, namespace, "main")
    code, out, err = run(cluster, "kill", "--account", "main", "-n", namespace, "--reason", "broker issue")
    assert code == 0, err
    assert f"tradingaccount {namespace}/main: kill switch ENGAGED" in out
    code, _, err = run(cluster, "kill", "--account", "nope", "-n", namespace)
    assert code == 1
    assert f"tradingaccount {namespace}/nope not found" in err
