"""The quantzoo chart, rendered by the real helm: lint, value sets, schema refusals, one-source copies.

No cluster: the live `helm install`/`test`/`upgrade`/`uninstall` runs on the real node
(tests/pods/test_zz_chart_lifecycle_realpods.py).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantzoo"
KUBE_VERSION = "1.34.4"  # as in conftest.py: .Capabilities must not be helm's default 1.20

OPERATOR = "qz-quantzoo-operator"
NAMESPACED_VOLUMES = {
    "emptyDir",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "ephemeral",
    "csi",
}


# ---------------------------------------------------------------- helpers


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for o in objects:
        if o["kind"] == "Pod":
            specs.append((f"Pod/{o['metadata']['name']}", o["spec"]))
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
    return specs


def restricted_violations(spec: dict) -> list[str]:
    """The `restricted` Pod Security Standard (v1.34), plus a read-only root filesystem."""
    problems = []
    pod_sc = spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{flag} is set")
    for vol in spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= NAMESPACED_VOLUMES:
            problems.append(f"volume {vol['name']} uses {kinds - NAMESPACED_VOLUMES}")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
    return problems


def normalise(rules: list[dict]) -> set[tuple]:
    """Rules as (apiGroup, resource, verb, resourceName) grants, so a split rule set can be compared."""
    grants = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    for rn in r.get("resourceNames", [None]):
                        grants.add((g, res, v, rn))
    return grants


# ---------------------------------------------------------------- lint and sources


def test_helm_lint_strict(helm):
    for extra in (
        [],
        ["--set", "sample.enabled=true"],
        ["--set-json", 'watchNamespaces=["team-a","team-b"]'],
    ):
        proc = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


def test_chart_crds_are_identical_to_the_sources():
    sources = sorted((REPO / "crds").glob("*.yaml"))
    assert [p.name for p in sources] == [
        "trading.quantzoo.io_tradingaccounts.yaml",
        "trading.quantzoo.io_tradinghalts.yaml",
        "trading.quantzoo.io_tradingsystems.yaml",
    ]
    for source in sources:
        copy = CHART / "crds" / source.name
        assert copy.read_bytes() == source.read_bytes(), (
            f"{source.name} drifted from crds/: run bash hack/sync-crd.sh"
        )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [p.name for p in sources]


def test_chart_monitoring_files_are_identical_to_the_sources():
    alerts = REPO / "monitoring" / "prometheus_alerts.yml"
    assert (CHART / "files" / "prometheus_alerts.yml").read_bytes() == alerts.read_bytes(), (
        "chart alert rules drifted from monitoring/: run bash hack/sync-crd.sh"
    )
    sources = {p.name: p.read_bytes() for p in (REPO / "monitoring" / "dashboards").glob("*.json")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert copies == sources, "chart dashboards drifted from monitoring/dashboards: run bash hack/sync-crd.sh"


def test_sync_script_is_idempotent(tmp_path):
    """hack/sync-crd.sh run on a copy of the sources reproduces the committed copies byte for byte."""
    for rel in (
        "hack/sync-crd.sh",
        "crds",
        "monitoring",
        "argocd",
        "charts/quantzoo/crds",
        "charts/quantzoo/files",
    ):
        src = REPO / rel
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    subprocess.run(
        ["bash", str(tmp_path / "hack" / "sync-crd.sh")], check=True, capture_output=True, timeout=60
    )
    for rel in ("charts/quantzoo/crds", "charts/quantzoo/files", "argocd/argocd-cm-patch.yaml"):
        diff = subprocess.run(
            ["diff", "-r", str(REPO / rel), str(tmp_path / rel)], capture_output=True, text=True
        )
        assert diff.returncode == 0, f"{rel} is stale; run bash hack/sync-crd.sh:\n{diff.stdout[:2000]}"


# ---------------------------------------------------------------- defaults


def test_defaults_render_the_operator_and_nothing_optional(render):
    out = render()
    assert out.kinds() == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "ConfigMap",
        "Pod",
        "ValidatingAdmissionPolicy",  # a release needs the release right (kill-release-policy.yaml)
        "ValidatingAdmissionPolicyBinding",
    }
    assert not out.of_kind("TradingSystem"), "the sample must be off by default"
    assert not out.of_kind("PrometheusRule")
    assert not out.of_kind("PodMonitor")
    for o in out.objects:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "quantzoo"
        assert labels["app.kubernetes.io/instance"] == "qz"
        assert len(o["metadata"]["name"]) <= 63


def test_cluster_role_rules_are_the_rbac_file(render, rbac_rules):
    out = render()
    role = out.one("ClusterRole", OPERATOR)
    assert role["rules"] == rbac_rules
    binding = out.one("ClusterRoleBinding", OPERATOR)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": OPERATOR,
    }
    sa = out.one("ServiceAccount", OPERATOR)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "quantzoo-system"}
    ]
    deploy = out.one("Deployment", OPERATOR)
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert not out.of_kind("Role")
    assert not out.of_kind("RoleBinding")


def test_operator_deployment(render):
    deploy = render().one("Deployment", OPERATOR)
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}, "never two operators at once"
    pod = deploy["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "quantzoo/quantzoo:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["command"] == ["quantzoo-operator"]
    assert c["args"] == ["--all-namespaces", "--log-level=info", "--standalone"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}


def test_operator_pod_gets_no_service_links(render):
    """The kubelet would set <SERVICE>_PORT=tcp://... variables for the chart's own Service
    (quantzoo-operator -> QUANTZOO_OPERATOR_PORT), which the operator reads as its settings: on a real
    kubelet it crashed with "QUANTZOO_OPERATOR_HTTP_PORT='tcp://10.0.142.207:8080' is not a valid int"."""
    out = render(release="quantzoo")  # the release name the README installs with
    service_vars = {
        svc["metadata"]["name"].upper().replace("-", "_") + "_PORT" for svc in out.of_kind("Service")
    }
    assert "QUANTZOO_OPERATOR_PORT" in service_vars  # the collision is real
    (deploy,) = out.of_kind("Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False


@pytest.mark.parametrize("values", [[], ["--set", "sample.enabled=true"]], ids=["defaults", "sample"])
def test_every_pod_passes_restricted_pod_security(render, values):
    specs = pod_specs(render(*values).objects)
    assert {name.split("/")[0] for name, _ in specs} == {"Deployment", "Pod"}
    for name, spec in specs:
        assert restricted_violations(spec) == [], name


def test_restricted_check_catches_violations():
    bad = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [
            {"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}}
        ],
    }
    problems = restricted_violations(bad)
    for text in (
        "hostNetwork",
        "hostPath",
        "privileged",
        "allowPrivilegeEscalation",
        "drop ALL",
        "SYS_ADMIN",
        "runAsNonRoot",
        "seccompProfile",
        "writable",
    ):
        assert any(text in p for p in problems), (text, problems)


def test_operator_service_and_network_policy(render):
    out = render()
    svc = out.one("Service", OPERATOR)
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    np = out.one("NetworkPolicy", OPERATOR)
    assert np["spec"]["podSelector"]["matchLabels"] == svc["spec"]["selector"]
    assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = np["spec"]["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}]
    test_peer = ingress["from"][0]["podSelector"]["matchLabels"]
    assert test_peer["app.kubernetes.io/component"] == "test"
    egress_ports = {(p["port"], p["protocol"]) for rule in np["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {
        (53, "UDP"),
        (53, "TCP"),
        (443, "TCP"),
        (6443, "TCP"),
        (8001, "TCP"),
        (8888, "TCP"),
    }
    workload_rule = next(r for r in np["spec"]["egress"] if {"port": 8001, "protocol": "TCP"} in r["ports"])
    exprs = workload_rule["to"][0]["podSelector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": ["engine", "safety"]} in exprs


def test_network_policy_can_be_turned_off(render):
    assert not render("--set", "networkPolicy.enabled=false").of_kind("NetworkPolicy")


def test_helm_test_hook(render):
    out = render()
    pod = out.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["python", "-c"]
    assert c["args"] == [(CHART / "files" / "helm-test.py").read_text()]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["QUANTZOO_OPERATOR_URL"] == f"http://{OPERATOR}.quantzoo-system.svc:8080"
    test_role = next(o for o in out.of_kind("ClusterRole") if o["metadata"]["name"].endswith("-test"))
    assert test_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["tradingsystems.trading.quantzoo.io"],
            "verbs": ["get"],
        }
    ]
    for o in out.objects:
        if o["metadata"]["name"].endswith("-test"):
            assert o["metadata"]["annotations"]["helm.sh/hook"] == "test", o["kind"]
    assert not render("--set", "tests.enabled=false").of_kind("Pod")


def test_values_reach_the_deployment(render):
    out = render(
        "--set",
        "image.repository=example/quantzoo",
        "--set",
        "image.tag=1.2.3",
        "--set",
        "image.pullPolicy=Always",
        "--set",
        "logLevel=debug",
        "--set",
        "nodeSelector.pool=trading",
        "--set",
        "podAnnotations.team=equities",
        "--set-json",
        'tolerations=[{"key":"dedicated","operator":"Equal","value":"trading","effect":"NoSchedule"}]',
        "--set-json",
        'affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":'
        '{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}]}}}',
        "--set",
        "resources.limits.memory=1Gi",
        "--set-json",
        'pushNetworks=["10.244.0.0/16","fd00::/8"]',
    )
    pod = out.one("Deployment", OPERATOR)["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "example/quantzoo:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert "--log-level=debug" in c["args"]
    assert c["resources"]["limits"]["memory"] == "1Gi"
    assert pod["spec"]["nodeSelector"] == {"pool": "trading"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["spec"]["affinity"]
    assert pod["metadata"]["annotations"]["team"] == "equities"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["QUANTZOO_OPERATOR_PUSH_NETWORKS"] == "10.244.0.0/16,fd00::/8"


def test_scrape_namespaces_reach_the_operator(render):
    """The namespaces that may scrape engine and safety pods are a chart value the operator receives (it
    writes them into each TradingSystem's NetworkPolicies); unset, the operator gets nothing."""
    out = render("--set-json", 'monitoring.scrapeNamespaces=["monitoring","observability"]')
    (c,) = out.one("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["QUANTZOO_OPERATOR_MONITORING_NAMESPACES"] == "monitoring,observability"
    (c,) = render().one("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    assert "QUANTZOO_OPERATOR_MONITORING_NAMESPACES" not in {e["name"] for e in c["env"]}


# ---------------------------------------------------------------- operands: image and placement

DIGEST = "sha256:" + "0123456789abcdef" * 4


def operator_env(out) -> dict[str, str | None]:
    (c,) = out.one("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in c["env"]}


def test_operands_default_to_the_charts_image(render):
    """The operator gets the chart's image (and pull policy) as the default of engine and safety pods."""
    env = operator_env(render("--set", "image.tag=1.2.3", "--set", "image.pullPolicy=Never"))
    assert env["QUANTZOO_OPERATOR_DEFAULT_IMAGE"] == "quantzoo/quantzoo:1.2.3"
    assert env["QUANTZOO_OPERATOR_DEFAULT_IMAGE_PULL_POLICY"] == "Never"
    assert operator_env(render())["QUANTZOO_OPERATOR_DEFAULT_IMAGE"] == "quantzoo/quantzoo:0.1.0"


def test_image_by_digest(render):
    """image.digest: the operator's pod, the helm test pod and the operands all run repository@digest."""
    out = render("--set", f"image.digest={DIGEST}", "--set", "image.tag=ignored")
    expected = f"quantzoo/quantzoo@{DIGEST}"
    images = {c["image"] for _, spec in pod_specs(out.objects) for c in spec["containers"]}
    assert images == {expected}
    assert operator_env(out)["QUANTZOO_OPERATOR_DEFAULT_IMAGE"] == expected


PLACEMENT = {
    "imagePullSecrets": [{"name": "registry-creds"}],
    "nodeSelector": {"node-role.example/trading": "true"},
    "tolerations": [{"key": "trading", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "priorityClassName": "trading-critical",
}


def test_operand_placement_defaults_reach_the_operator(render):
    env = operator_env(render("--set-json", f"operands={json.dumps(PLACEMENT)}"))
    assert json.loads(env["QUANTZOO_OPERATOR_OPERAND_PLACEMENT"]) == PLACEMENT
    # Nothing set: no variable (the operator's default is "no placement").
    assert "QUANTZOO_OPERATOR_OPERAND_PLACEMENT" not in operator_env(render())


def test_operator_pod_takes_the_same_placement_values(render):
    args = [a for k, v in PLACEMENT.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]
    pod = render(*args).one("Deployment", OPERATOR)["spec"]["template"]["spec"]
    for key, value in PLACEMENT.items():
        assert pod[key] == value, key


# ---------------------------------------------------------------- watched namespaces


def test_watch_namespaces_restricts_the_operator(render, rbac_rules):
    out = render("--set-json", 'watchNamespaces=["team-a","team-b"]')
    (c,) = out.one("Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["--namespace=team-a", "--namespace=team-b", "--log-level=info", "--standalone"]
    roles = out.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = out.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"][0]["namespace"] == "quantzoo-system"
    cluster_role = out.one("ClusterRole", OPERATOR)
    cluster_resources = {res for r in cluster_role["rules"] for res in r["resources"]}
    assert cluster_resources == {
        "namespaces",
        "customresourcedefinitions",
        "tradinghalts",  # cluster-scoped: the levels of the kill switch
        "tradinghalts/status",
    }
    # Split, not changed: the namespaced Role plus the ClusterRole grant exactly what the file grants.
    assert normalise(roles[0]["rules"]) | normalise(cluster_role["rules"]) == normalise(rbac_rules)
    assert not normalise(roles[0]["rules"]) & normalise(cluster_role["rules"])


def test_watch_namespaces_scope_the_pod_monitors(render):
    out = render("--set-json", 'watchNamespaces=["team-a"]', monitoring_api=True)
    for pm in out.of_kind("PodMonitor"):
        if pm["metadata"]["name"] == OPERATOR:
            assert pm["spec"]["namespaceSelector"] == {"matchNames": ["quantzoo-system"]}
        else:
            assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


# ---------------------------------------------------------------- sample TradingSystem


def test_sample_tradingsystem(render):
    out = render("--set", "sample.enabled=true", "--set", "sample.namespace=trading")
    ts = out.one("TradingSystem", "demo")
    assert ts["apiVersion"] == "trading.quantzoo.io/v1alpha1"
    assert ts["metadata"]["namespace"] == "trading"
    assert ts["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert ts["spec"] == values["sample"]["spec"]
    assert "killSwitch" not in ts["spec"]


def test_sample_never_renders_the_kill_switch_even_past_the_schema(helm):
    """The schema refuses sample.spec.killSwitch; the template also drops it if the schema is skipped."""
    proc = helm.run(
        "template",
        "qz",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--skip-schema-validation",
        "--set",
        "sample.enabled=true",
        "--set",
        "sample.spec.killSwitch.engaged=false",
    )
    assert proc.returncode == 0, proc.stderr
    (ts,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "TradingSystem"]
    assert "killSwitch" not in ts["spec"]
    (ts_text,) = [d for d in proc.stdout.split("\n---") if "\nkind: TradingSystem" in d]
    assert not [
        line for line in ts_text.splitlines() if "killSwitch" in line and not line.lstrip().startswith("#")
    ]


def test_include_crds_renders_the_crds(helm):
    proc = helm.run("template", "qz", str(CHART), "--kube-version", KUBE_VERSION, "--include-crds")
    assert proc.returncode == 0, proc.stderr
    crds = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "CustomResourceDefinition"]
    sources = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert sorted(crds, key=lambda c: c["metadata"]["name"]) == sources


# ---------------------------------------------------------------- monitoring


def test_monitoring_needs_the_api(render):
    assert not render().of_kind("PrometheusRule")
    out = render(monitoring_api=True)
    assert len(out.of_kind("PrometheusRule")) == 1
    assert len(out.of_kind("PodMonitor")) == 3
    off = render("--set", "monitoring.enabled=false", monitoring_api=True)
    assert not off.of_kind("PrometheusRule")
    assert not off.of_kind("PodMonitor")
    assert not off.of_kind("ConfigMap")
    rule_off = render("--set", "monitoring.prometheusRule.enabled=false", monitoring_api=True)
    assert not rule_off.of_kind("PrometheusRule")
    assert len(rule_off.of_kind("PodMonitor")) == 3


def test_prometheus_rule_is_the_alerts_file(render):
    rule = render(
        "--set", "monitoring.additionalLabels.release=kube-prometheus-stack", monitoring_api=True
    ).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((REPO / "monitoring" / "prometheus_alerts.yml").read_text())
    assert rule["spec"] == source
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts["HighDrawdown"]["expr"] == "unrealized_pnl_pct < -10"
    assert alerts["SlowAPI"]["expr"] == "api_latency_seconds > 1"
    assert {
        "KillSwitchEngaged",
        "EngineDown",
        "DataStale",
        "OrderRejectSpike",
        "OperatorDown",
        "OperatorReconcileErrors",
    } <= alerts.keys()


def test_pod_monitors(render):
    out = render(monitoring_api=True)
    monitors = {pm["metadata"]["name"]: pm["spec"] for pm in out.of_kind("PodMonitor")}
    for component, port in (("engine", "8001"), ("safety", "8888")):
        spec = monitors[f"qz-quantzoo-{component}"]
        assert spec["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "quantzoo",
            "app.kubernetes.io/component": component,
        }
        assert spec["namespaceSelector"] == {"any": True}
        (ep,) = spec["podMetricsEndpoints"]
        assert ep["path"] == "/metrics"
        relabel = ep["relabelings"]
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_container_port_number"],
            "regex": port,
            "action": "keep",
        } in relabel
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_label_trading_quantzoo_io_system"],
            "targetLabel": "tradingsystem",
        } in relabel
    operator = monitors[OPERATOR]
    assert operator["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert operator["podMetricsEndpoints"][0]["port"] == "http"
    deploy = out.one("Deployment", OPERATOR)
    assert (
        operator["selector"]["matchLabels"].items()
        <= deploy["spec"]["template"]["metadata"]["labels"].items()
    )


def test_dashboard_configmap(render):
    cm = render().one("ConfigMap", "qz-quantzoo-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    sources = {p.name: p.read_text() for p in (REPO / "monitoring" / "dashboards").glob("*.json")}
    assert cm["data"] == sources
    titles = {json.loads(v)["title"] for v in cm["data"].values()}
    assert titles == {
        "QuantZoo / System Overview",
        "QuantZoo / Trading Performance",
        "QuantZoo / Risk Metrics",
        "QuantZoo / Data Quality",
    }
    moved = render("--set", "monitoring.dashboards.namespace=grafana").one("ConfigMap")
    assert moved["metadata"]["namespace"] == "grafana"


# ---------------------------------------------------------------- values.schema.json refuses bad values

BAD_VALUES = [
    (
        ["--set", "logLevel=verbose"],
        "at '/logLevel': value must be one of 'debug', 'info', 'warning', 'error'",
    ),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of"),
    (["--set", "image.repository=Quant Zoo"], "at '/image/repository'"),
    (
        ["--set-json", 'watchNamespaces=["Team_A"]'],
        "at '/watchNamespaces/0': 'Team_A' does not match pattern",
    ),
    (["--set-json", 'watchNamespaces=["a","a"]'], "at '/watchNamespaces'"),
    (
        ["--set", "securityContext.allowPrivilegeEscalation=true"],
        "at '/securityContext/allowPrivilegeEscalation': value must be false",
    ),
    (
        ["--set", "securityContext.readOnlyRootFilesystem=false"],
        "at '/securityContext/readOnlyRootFilesystem': value must be true",
    ),
    (
        ["--set", "podSecurityContext.runAsNonRoot=false"],
        "at '/podSecurityContext/runAsNonRoot': value must be true",
    ),
    (
        ["--set", "sample.spec.killSwitch.engaged=true"],
        "at '/sample/spec': additional properties 'killSwitch' not allowed",
    ),
    (
        ["--set", "sample.spec.mode=yolo"],
        "at '/sample/spec/mode': value must be one of 'paper', 'live', 'dryRun'",
    ),
    (["--set", "sample.enabled=yes"], "at '/sample/enabled'"),
    (["--set", "service.port=70000"], "at '/service/port'"),
    (["--set", "monitoring.podMonitors.interval=often"], "at '/monitoring/podMonitors/interval'"),
    (["--set-json", 'pushNetworks=["pods"]'], "at '/pushNetworks/0'"),
    (["--set-json", 'monitoring.scrapeNamespaces=["Bad_NS"]'], "at '/monitoring/scrapeNamespaces/0'"),
    (["--set", "replicaCount=2"], "at '': additional properties 'replicaCount' not allowed"),
    (["--set", "image.digest=sha256:abc"], "at '/image/digest'"),
    (["--set", "image.digest=latest"], "at '/image/digest'"),
    (
        ["--set-json", 'operands.tolerations=[{"key":"t","operator":"Sometimes"}]'],
        "at '/operands/tolerations/0/operator': value must be one of 'Exists', 'Equal'",
    ),
    (["--set-json", 'operands.nodeSelector={"bad key!":"x"}'], "'bad key!' does not match pattern"),
    (["--set", "operands.priorityClassName=Not_A_Name"], "at '/operands/priorityClassName'"),
    (["--set-json", 'operands.affinity={"nodeAfinity":{}}'], "at '/operands/affinity'"),
    (["--set-json", 'operands.imagePullSecrets=[{"nam":"x"}]'], "at '/operands/imagePullSecrets/0'"),
    (["--set", "operands.gpu=true"], "at '/operands': additional properties 'gpu' not allowed"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_schema_refuses_bad_values(refuse, args, message):
    stderr = refuse(*args)
    assert "values don't meet the specifications of the schema" in stderr
    assert message in stderr, stderr


def test_service_account_name_required_when_not_created(refuse):
    stderr = refuse("--set", "serviceAccount.create=false")
    assert "serviceAccount.name is required when serviceAccount.create is false" in stderr


# ---------------------------------------------------------------- NOTES.txt


def test_notes_document_status_and_the_kill_switch():
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "kubectl get ts -A -w" in notes
    commands = re.findall(r"kubectl patch ts NAME -n NAMESPACE --type merge -p '([^']+)'", notes)
    assert [json.loads(c) for c in commands] == [
        {"spec": {"killSwitch": {"engaged": True, "reason": "...", "operator": "..."}}},
        {"spec": {"killSwitch": {"engaged": False, "release": {"operator": "...", "reason": "..."}}}},
    ]


def test_notes_render(helm, tmp_path):
    """NOTES.txt renders (helm template drops it, so render it as a template of a copy of the chart)."""
    chart = tmp_path / "quantzoo"
    subprocess.run(["cp", "-a", str(CHART), str(chart)], check=True)
    (chart / "templates" / "notes-as-configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "NOTES.txt") . | toJson }}\n'
    )
    (chart / "NOTES.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    for args, expect in (
        ([], "watches every namespace"),
        (["--set-json", 'watchNamespaces=["team-a","team-b"]'], "namespaces: team-a, team-b"),
        (["--set", "sample.enabled=true"], 'The sample "demo" is installed'),
    ):
        proc = helm.run(
            "template",
            "qz",
            str(chart),
            "--kube-version",
            KUBE_VERSION,
            "--show-only",
            "templates/notes-as-configmap.yaml",
            *args,
        )
        assert proc.returncode == 0, proc.stderr
        notes = yaml.safe_load(proc.stdout)["data"]["notes"]
        assert expect in notes
        assert "deployment/qz-quantzoo-operator" in notes
        assert "helm test qz" in notes


# ---------------------------------------------------------------- the helm test script itself


class _StubAPI(BaseHTTPRequestHandler):
    """Stands in for the API server and the operator (a stub: no cluster here).

    The live install test will run the same script as a real `helm test` against the real ones.
    """

    established = True

    def do_GET(self):
        if (
            self.path
            == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tradingsystems.trading.quantzoo.io"
        ):
            status = "True" if self.established else "False"
            body = json.dumps(
                {"status": {"conditions": [{"type": "Established", "status": status}]}}
            ).encode()
        elif self.path == "/healthz":
            body = b"ok"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("established", [True, False])
def test_helm_test_script(established):
    handler = type("Stub", (_StubAPI,), {"established": established})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = subprocess.run(
            [sys.executable, "-c", (CHART / "files" / "helm-test.py").read_text()],
            env={
                "KUBERNETES_API_URL": url,
                "QUANTZOO_OPERATOR_URL": url,
                "QUANTZOO_TEST_TIMEOUT": "0",
                "PATH": "/usr/bin:/bin",
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    if established:
        assert proc.returncode == 0, proc.stderr
        assert "ok: CRD tradingsystems.trading.quantzoo.io is Established" in proc.stdout
        assert "ok: operator answers" in proc.stdout
    else:
        assert proc.returncode == 1
        assert "FAIL: CRD tradingsystems.trading.quantzoo.io is Established (not yet)" in proc.stderr


def test_helm_test_script_reports_an_unreachable_operator():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-c", (CHART / "files" / "helm-test.py").read_text()],
        env={
            "KUBERNETES_API_URL": f"http://127.0.0.1:{port}",
            "QUANTZOO_OPERATOR_URL": f"http://127.0.0.1:{port}",
            "QUANTZOO_TEST_TIMEOUT": "0",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert "FAIL: operator answers" in proc.stderr
    assert "Connection refused" in proc.stderr


def test_readme_documents_kind_helm_and_argocd():
    readme = (CHART / "README.md").read_text()
    for needle in (
        "docker build -t quantzoo/quantzoo:0.1.0 .",
        "kind load docker-image quantzoo/quantzoo:0.1.0",
        "helm install quantzoo charts/quantzoo",
        "argocd/applications/app-of-apps.yaml",
        "argocd/argocd-cm-patch.yaml",
        "helm test quantzoo",
    ):
        assert needle in readme, needle
    assert Path(REPO / "Dockerfile").is_file()
