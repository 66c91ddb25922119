"""kubectl-quantzoo: argument parsing, the patches it builds, its messages and exit codes (against a
stand-in; test_safety_cluster.py runs it against the real API server)."""

from __future__ import annotations

import io

import pytest
from quantzoo_safety import kubectl_plugin
from quantzoo_safety.kube import ApiServerUnreachable, KubeRefused
from safety_fake_kube import CEL_MESSAGE, FakeTradingSystems


def run(systems, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = kubectl_plugin.main(list(argv), systems=systems, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def ks(systems, name="demo"):
    return systems.clients[("trading", name)].obj["spec"]["killSwitch"]


# ----------------------------------------------------------------------------------------- parsing
def test_parse_kill():
    args = kubectl_plugin.parse_args(
        [
            "kill",
            "demo",
            "-n",
            "trading",
            "--reason",
            "r",
            "--operator",
            "al",
            "--close-positions",
            "--mode",
            "ReduceOnly",
        ]
    )
    assert (args.command, args.name, args.namespace, args.reason, args.operator) == (
        "kill",
        "demo",
        "trading",
        "r",
        "al",
    )
    assert args.close_positions is True
    assert args.mode == "ReduceOnly"
    assert args.all is False


def test_operator_defaults_to_the_local_user(monkeypatch):
    monkeypatch.setattr(kubectl_plugin.getpass, "getuser", lambda: "night-shift")
    assert kubectl_plugin.parse_args(["release", "--all", "--reason", "fixed"]).operator == "night-shift"


def test_operator_fallback_without_a_passwd_entry(monkeypatch):
    def no_user():
        raise KeyError("uid not found")

    monkeypatch.setattr(kubectl_plugin.getpass, "getuser", no_user)
    monkeypatch.setenv("USER", "container-user")
    assert kubectl_plugin.default_operator() == "container-user"


@pytest.mark.parametrize(
    "argv",
    [
        ["kill", "--reason", "r"],  # neither NAME nor --all
        ["kill", "demo", "--all", "--reason", "r"],  # both
        ["release", "demo"],  # a release names why (an engage never needs to)
        ["release", "demo", "--reason", "r", "--operator", " "],
        ["status", "--all"],
        ["explode"],
        [],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        kubectl_plugin.parse_args(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- kill
def test_kill_builds_the_engage_patch_with_a_precondition():
    systems = FakeTradingSystems()
    code, out, err = run(systems, "kill", "demo", "-n", "trading", "--reason", "runaway", "--operator", "al")
    assert code == 0, err
    assert out == "tradingsystem trading/demo: kill switch ENGAGED (Halt)\n"
    (_, _, _, patch, rv) = next(c for c in systems.calls if c[0] == "patch")
    sent = patch["spec"]["killSwitch"]
    assert sent["engaged"] is True
    assert sent["reason"] == "runaway"
    assert sent["operator"] == "al"
    assert sent["source"] == "kubectl"
    assert sent["closePositions"] is False
    assert sent["mode"] == "Halt"
    assert sent["engagedAt"].endswith("Z")
    assert rv == "1"


def test_kill_when_engaged_keeps_who_and_why_and_escalates():
    systems = FakeTradingSystems()
    run(
        systems,
        "kill",
        "demo",
        "-n",
        "trading",
        "--reason",
        "first",
        "--operator",
        "al",
        "--mode",
        "ReduceOnly",
    )
    code, out, _ = run(systems, "kill", "demo", "-n", "trading", "--reason", "second", "--operator", "bo")
    assert code == 0
    assert "already engaged by al (first)" in out
    assert "escalated mode" in out
    code, out, _ = run(systems, "kill", "demo", "-n", "trading", "--reason", "third", "--close-positions")
    assert "escalated closePositions" in out
    assert ks(systems)["reason"] == "first"
    assert ks(systems)["mode"] == "Halt"
    assert ks(systems)["closePositions"] is True
    code, out, _ = run(systems, "kill", "demo", "-n", "trading", "--reason", "fourth")
    assert "escalated" not in out
    assert len([c for c in systems.calls if c[0] == "patch"]) == 3


def test_kill_all_in_the_namespace():
    systems = FakeTradingSystems(names=("a", "b", "c"))
    code, out, _ = run(
        systems, "kill", "--all", "-n", "trading", "--reason", "market halt", "--close-positions"
    )
    assert code == 0
    assert out.count("ENGAGED (Halt, closing positions)") == 3
    assert all(ks(systems, n)["engaged"] for n in "abc")


def test_kill_retries_on_a_conflict():
    systems = FakeTradingSystems()
    client = systems.clients[("trading", "demo")]
    real = systems.get
    bumped = []

    def get_then_someone_else_writes(ns, name):
        obj = real(ns, name)
        if not bumped:  # another writer changes the object between our read and our patch
            bumped.append(1)
            client.obj["metadata"]["resourceVersion"] = "7"
        return obj

    systems.get = get_then_someone_else_writes
    code, _, _ = run(systems, "kill", "demo", "-n", "trading", "--reason", "r")
    assert code == 0
    assert client.conflicts == 1
    assert ks(systems)["engaged"] is True


# ------------------------------------------------------------------------------------------ release
def test_release_writes_the_release_record():
    systems = FakeTradingSystems()
    run(systems, "kill", "demo", "-n", "trading", "--reason", "r")
    code, out, _ = run(
        systems, "release", "demo", "-n", "trading", "--reason", "root cause fixed", "--operator", "al"
    )
    assert code == 0
    assert out == "tradingsystem trading/demo: kill switch released by al (root cause fixed)\n"
    release = ks(systems)["release"]
    assert (release["operator"], release["reason"]) == ("al", "root cause fixed")
    assert ks(systems)["engaged"] is False


def test_release_when_not_engaged():
    systems = FakeTradingSystems(names=("a", "b"))
    code, _, err = run(systems, "release", "a", "-n", "trading", "--reason", "r")
    assert code == 1
    assert "not engaged; nothing to release" in err
    run(systems, "kill", "b", "-n", "trading", "--reason", "r")
    code, out, err = run(systems, "release", "--all", "-n", "trading", "--reason", "r")
    assert code == 0  # with --all, a system that is not engaged is simply skipped
    assert "trading/b: kill switch released" in out
    assert "trading/a: kill switch is not engaged" in err


# ------------------------------------------------------------------------------------------- errors
def test_not_found():
    code, out, err = run(FakeTradingSystems(), "kill", "ghost", "-n", "trading", "--reason", "r")
    assert code == 1
    assert out == ""
    assert err.strip() == 'error: tradingsystems.trading.quantzoo.io "ghost" not found in namespace trading'


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KubeRefused(403, 'tradingsystems "demo" is forbidden: User "bob" cannot patch'), "error: forbidden"),
        (KubeRefused(422, f"TradingSystem 'demo' is invalid: {CEL_MESSAGE}"), CEL_MESSAGE),
        (
            ApiServerUnreachable("API server unreachable on get: ConnectionRefusedError"),
            "hint: the safety service",
        ),
    ],
)
def test_api_server_errors_are_printed_as_given(error, expected):
    systems = FakeTradingSystems()
    systems.error = error
    code, _, err = run(systems, "kill", "demo", "-n", "trading", "--reason", "r")
    assert code == 1
    assert expected in err
    code, _, err = run(systems, "status", "-n", "trading")
    assert code == 1
    assert expected in err


# ------------------------------------------------------------------------------------------- status
def test_status_table():
    systems = FakeTradingSystems(names=("alpha", "beta", "gamma"))
    run(systems, "kill", "alpha", "-n", "trading", "--reason", "runaway trading", "--operator", "al")
    run(systems, "kill", "beta", "-n", "trading", "--reason", "x", "--operator", "bo")
    run(systems, "release", "beta", "-n", "trading", "--reason", "fixed", "--operator", "bo")
    systems.clients[("trading", "alpha")].obj["status"] = {
        "phase": "Halted",
        "killSwitch": {"acknowledgements": [{"replica": "alpha-engine-0", "engaged": True}]},
    }
    code, out, _ = run(systems, "status", "-n", "trading")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "MODE", "PHASE", "KILL", "SWITCH", "REASON", "BY", "ACKS"]
    assert lines[1].split() == [
        "alpha",
        "paper",
        "Halted",
        "ENGAGED",
        "(Halt)",
        "runaway",
        "trading",
        "al",
        "1/1",
    ]
    assert lines[2].split() == ["beta", "paper", "-", "released", "fixed", "bo", "-"]
    assert lines[3].split() == ["gamma", "paper", "-", "off", "-", "-", "-"]
    code, out, _ = run(systems, "status", "alpha", "-n", "trading")
    assert len(out.splitlines()) == 2


def test_status_empty_namespace():
    code, out, _ = run(FakeTradingSystems(), "status", "-n", "elsewhere")
    assert code == 0
    assert out == "No TradingSystems found in namespace elsewhere.\n"


def test_status_rows_truncate_long_reasons():
    obj = {
        "metadata": {"name": "x"},
        "spec": {"killSwitch": {"engaged": True, "reason": "r" * 300, "operator": "o"}},
    }
    row = kubectl_plugin.status_rows([obj])[1]
    assert len(row[4]) == 48
    assert row[4].endswith("…")


def test_namespace_from_the_kubeconfig_context(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: one, context: {cluster: c, user: u, namespace: trading}}
- {name: two, context: {cluster: c, user: u}}
current-context: one
"""
    )
    assert kubectl_plugin.current_namespace(str(kubeconfig), None) == "trading"
    assert kubectl_plugin.current_namespace(str(kubeconfig), "two") == "default"
    assert kubectl_plugin.current_namespace(str(tmp_path / "missing"), None) == "default"


# ------------------------------------------------------------------- an engage is never refused (#15)
def test_kill_without_reason_engages_with_defaults():
    """Finding 10: `kubectl quantzoo kill NAME` without --reason was an argparse error."""
    systems = FakeTradingSystems()
    code, out, err = run(systems, "kill", "demo", "-n", "trading", "--operator", " ")
    assert code == 0, err
    assert "ENGAGED" in out
    engaged = ks(systems)
    assert engaged["engaged"] is True
    assert engaged["reason"] == "no reason given"
    assert engaged["operator"]  # the local user, or "unknown"
    assert engaged["engagedAt"]


def test_kill_normalises_mode_and_shortens_reason():
    systems = FakeTradingSystems()
    code, _, err = run(systems, "kill", "demo", "-n", "trading", "--mode", "halt", "--reason", "x" * 5000)
    assert code == 0, err
    assert (ks(systems)["mode"], len(ks(systems)["reason"])) == ("Halt", 1024)
    code, _, err = run(systems, "kill", "demo", "-n", "trading", "--mode", "reduce-only", "--reason", "again")
    assert code == 0, err
    assert ks(systems)["mode"] == "Halt"  # already engaged as Halt: a weaker ask does not weaken it
