"""Network faults inside a real pod's own network namespace (tests/pods): iptables DROP rules entered with
`nsenter` into the netns of a container's process, so packets vanish silently (no RST, no FIN), as on a
partitioned network; and where a pod's TCP connections really go (`ss` in that netns).

The pod's netns sees addresses before the node's kube-proxy DNAT (a Service's ClusterIP on the way out,
the same ClusterIP on the replies, which conntrack un-NATs on the node), so a partition from the API server
drops both the `kubernetes` Service's address and the endpoint behind it, in both directions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from hack.devcluster import node
from tests.pods import realpods


@dataclass(frozen=True)
class Peer:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def in_netns(pid: int, *argv: str, check: bool = True) -> str:
    return node.run("nsenter", "-t", str(pid), "-n", *argv, check=check).stdout


def api_server_peers(cluster: node.RealCluster) -> list[Peer]:
    """The API server as a pod may address it: the `kubernetes` Service and its endpoints."""
    svc = realpods.kubectl_json(cluster, "-n", "default", "get", "service", "kubernetes")
    peers = [Peer(svc["spec"]["clusterIP"], p["port"]) for p in svc["spec"]["ports"]]
    eps = realpods.kubectl_json(cluster, "-n", "default", "get", "endpoints", "kubernetes")
    for subset in eps.get("subsets") or []:
        for address in subset.get("addresses") or []:
            peers += [Peer(address["ip"], p["port"]) for p in subset.get("ports") or []]
    return peers


def established_peers(pid: int) -> set[Peer]:
    """The remote ends of the netns's established TCP connections."""
    out = in_netns(pid, "ss", "-Htn", "state", "established")
    peers = set()
    for line in out.splitlines():
        remote = line.split()[-1]
        ip, port = remote.rsplit(":", 1)
        peers.add(Peer(ip.strip("[]"), int(port)))
    return peers


def from_api_server(peers: list[Peer]) -> list[list[str]]:
    """DROP rules cutting the netns off the API server both ways (and nothing else)."""
    rules = []
    for p in peers:
        rules.append(["OUTPUT", "-p", "tcp", "-d", p.ip, "--dport", str(p.port), "-j", "DROP"])
        rules.append(["INPUT", "-p", "tcp", "-s", p.ip, "--sport", str(p.port), "-j", "DROP"])
    return rules


def inbound_from(ip: str, port: int) -> list[list[str]]:
    """A DROP rule black-holing what `ip` sends to `port` in the netns (its SYNs never answered)."""
    return [["INPUT", "-p", "tcp", "-s", ip, "--dport", str(port), "-j", "DROP"]]


def dropped_packets(pid: int, rules: list[list[str]]) -> int:
    """Packets the rules dropped so far (their counters in `iptables-save -c`)."""
    saved = in_netns(pid, "iptables-save", "-c", "-t", "filter")
    total = 0
    for line in saved.splitlines():
        if not line.startswith("["):
            continue
        counters, rule = line.split(" ", 1)
        words = rule.split()
        for r in rules:
            if words[:2] == ["-A", r[0]] and all(w in words or f"{w}/32" in words for w in r[1:]):
                total += int(counters.strip("[]").split(":")[0])
    return total


def redirect(source_ip: str, port: int, to_port: int) -> list[list[str]]:
    """A nat rule in the netns: new connections from `source_ip` to `port` go to `to_port` there instead
    (where a delay proxy listens, tests/faults/delay_proxy.py). Connections already open keep their way."""
    match = ["-p", "tcp", "-s", source_ip, "--dport", str(port)]
    return [["PREROUTING", *match, "-j", "REDIRECT", "--to-ports", str(to_port)]]


def dropping(pid: int, rules: list[list[str]]) -> contextlib.AbstractContextManager[list[list[str]]]:
    """The DROP rules in force in the netns of `pid` for the `with` block."""
    return rules_in(pid, rules)


@contextlib.contextmanager
def rules_in(pid: int, rules: list[list[str]], table: str = "filter") -> Iterator[list[list[str]]]:
    """The rules inserted first in their chains (of `table`) in the netns of `pid`; always removed on the way
    out."""
    inserted: list[list[str]] = []
    try:
        for r in rules:
            in_netns(pid, "iptables", "-w", "-t", table, "-I", *r)
            inserted.append(r)
        yield rules
    finally:
        for r in inserted:
            in_netns(pid, "iptables", "-w", "-t", table, "-D", *r, check=False)
