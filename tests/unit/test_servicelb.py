"""servicelb's pure logic, without a cluster (cluster/localcluster/servicelb.py): which loopback
block a cluster gets, the addresses of nodes and LoadBalancer Services, and which Services want
which listeners. The relaying itself is tested on real nodes (tests/realnode/test_load_balancer.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.localcluster import servicelb
from cluster.localcluster.servicelb import Balancer, LoopbackBlocks, Target, Wanted

PREFIX = "127.150.7"


@pytest.fixture
def blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoopbackBlocks:
    monkeypatch.setattr(servicelb, "loopback_listeners", lambda: set())
    return LoopbackBlocks(tmp_path / "loopback-blocks.json")


def holder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_a_block_is_a_prefix_in_the_range_kept_for_clusters(blocks, tmp_path):
    prefix = blocks.claim(holder(tmp_path, "a"))
    loopback, first, second = prefix.split(".")
    assert loopback == "127" and 100 <= int(first) <= 199 and 0 <= int(second) <= 255, prefix


def test_two_clusters_get_different_blocks_and_each_keeps_its_own(blocks, tmp_path):
    a, b = holder(tmp_path, "a"), holder(tmp_path, "b")
    first = blocks.claim(a)
    second = blocks.claim(b)
    assert first != second
    assert blocks.claim(a, wanted=first) == first, "a cluster's recorded block is given back to it"


def test_a_block_held_by_another_cluster_is_refused_naming_both(blocks, tmp_path):
    a, b = holder(tmp_path, "a"), holder(tmp_path, "b")
    taken = blocks.claim(a)
    with pytest.raises(RuntimeError, match=rf"{taken}\.0/24 of {b} is held by {a}"):
        blocks.claim(b, wanted=taken)


def test_a_block_where_something_already_listens_is_skipped(blocks, tmp_path, monkeypatch):
    a = holder(tmp_path, "a")
    would_get = blocks.claim(a)
    blocks.release(a)
    monkeypatch.setattr(servicelb, "loopback_listeners", lambda: {f"{would_get}.9"})
    assert blocks.claim(a) != would_get


def test_released_and_vanished_holders_hold_nothing(blocks, tmp_path):
    a, b = holder(tmp_path, "a"), holder(tmp_path, "b")
    first = blocks.claim(a)
    blocks.release(a)
    assert blocks.claim(b, wanted=first) == first, "a released block is free"
    b.rmdir()  # removed without `down`
    assert blocks.claim(a, wanted=first) == first, "a holder whose directory is gone holds nothing"


def node(index: int) -> SimpleNamespace:
    return SimpleNamespace(index=index, netns=f"mlp-{index}", node_ip=f"10.243.{index}.2",
                           spec=SimpleNamespace(name=f"real-pool{index}-0"))


def test_node_n_answers_at_host_n_plus_one_below_the_load_balancer_addresses():
    assert servicelb.node_address(PREFIX, node(0)) == f"{PREFIX}.1"
    assert servicelb.node_address(PREFIX, node(servicelb.MAX_NODES - 1)) == f"{PREFIX}.{servicelb.FIRST_LB_HOST - 1}"
    with pytest.raises(ValueError, match=f"node real-pool{servicelb.MAX_NODES}-0: at most {servicelb.MAX_NODES} nodes"):
        servicelb.node_address(PREFIX, node(servicelb.MAX_NODES))


def service(name: str, type_: str = "LoadBalancer", ports=({"port": 80, "nodePort": 30080},), uid: str | None = None,
            status_ip: str | None = None, **spec) -> dict:
    svc = {"metadata": {"namespace": "ns", "name": name, "uid": uid or f"uid-{name}"},
           "spec": {"type": type_, "ports": [dict(p) for p in ports], **spec}, "status": {}}
    if status_ip:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": status_ip}]}}
    return svc


@pytest.mark.parametrize(
    ("svc", "ours"),
    [
        (service("web"), True),
        (service("web", loadBalancerClass=servicelb.LOAD_BALANCER_CLASS), True),
        (service("web", loadBalancerClass="example.com/other"), False),
        (service("web", type_="NodePort"), False),
        (service("web", type_="ClusterIP"), False),
    ],
)
def test_only_load_balancers_of_no_class_or_ours_get_an_address(svc, ours):
    assert servicelb.is_ours(svc) is ours


@pytest.fixture
def balancer(tmp_path: Path) -> Balancer:
    (tmp_path / "servicelb.json").write_text(json.dumps(
        {"prefix": PREFIX, "kubectl": "kubectl", "kubeconfig": "kubeconfig", "nodes_dir": str(tmp_path / "nodes")}))
    made = Balancer(tmp_path)
    made.nodes = lambda: [node(0), node(1)]
    made.events = []
    made.event = lambda svc, kind, reason, message: made.events.append((servicelb.key_of(svc), reason, message))
    return made


def with_services(balancer: Balancer, *services: dict) -> Balancer:
    balancer.services = {servicelb.key_of(s): s for s in services}
    return balancer


def test_load_balancers_get_the_lowest_free_address_from_host_64(balancer):
    with_services(balancer, service("a"), service("b"), service("np", type_="NodePort"))
    balancer.allocate()
    assert sorted(balancer.addresses.values()) == [f"{PREFIX}.64", f"{PREFIX}.65"]
    assert "uid-np" not in balancer.addresses


def test_an_address_already_in_a_services_status_is_kept_after_a_restart(balancer):
    with_services(balancer, service("a"), service("b", status_ip=f"{PREFIX}.64"))
    balancer.allocate()
    assert balancer.addresses == {"uid-b": f"{PREFIX}.64", "uid-a": f"{PREFIX}.65"}


@pytest.mark.parametrize("ip", ["127.1.2.64", f"{PREFIX}.63", f"{PREFIX}.255", f"{PREFIX}.x", ""])
def test_a_status_address_outside_the_blocks_load_balancer_range_is_not_taken(balancer, ip):
    assert not balancer.in_lb_range(ip)


def test_a_deleted_service_gives_its_address_back(balancer):
    with_services(balancer, service("a"), service("b"))
    balancer.allocate()
    with_services(balancer, service("b"), service("c"))
    balancer.allocate()
    assert balancer.addresses["uid-b"] == f"{PREFIX}.65"
    assert balancer.addresses["uid-c"] == f"{PREFIX}.64", "a's address is free again"
    assert "uid-a" not in balancer.addresses


def test_with_every_address_taken_the_service_gets_a_warning_and_none(balancer):
    hosts = range(servicelb.FIRST_LB_HOST, servicelb.LAST_LB_HOST + 1)
    with_services(balancer, *[service(f"s{h}", status_ip=f"{PREFIX}.{h}") for h in hosts], service("late"))
    balancer.allocate()
    assert "uid-late" not in balancer.addresses
    assert balancer.events == [("ns/late", "NoAddress",
                                f"no loopback address left in {PREFIX}.0/24 for a LoadBalancer Service")]


def wanted(balancer: Balancer) -> tuple[dict, dict]:
    balancer.allocate()
    return balancer.wanted()


def test_every_node_port_listens_at_each_nodes_address_relaying_into_that_node(balancer):
    with_services(balancer, service("np", type_="NodePort", ports=({"port": 80, "nodePort": 30080},)))
    want, problems = wanted(balancer)
    assert want == {
        (f"{PREFIX}.1", 30080): Wanted("ns/np", (Target("mlp-0", "10.243.0.2", 30080),)),
        (f"{PREFIX}.2", 30080): Wanted("ns/np", (Target("mlp-1", "10.243.1.2", 30080),)),
    }
    assert problems == {}


def test_a_load_balancer_listens_on_its_port_at_its_address_relaying_to_every_node(balancer):
    with_services(balancer, service("lb", ports=({"port": 443, "nodePort": 30443},),
                                    loadBalancerSourceRanges=["127.0.0.1/32"]))
    want, _ = wanted(balancer)
    assert want[(f"{PREFIX}.64", 443)] == Wanted(
        "ns/lb", (Target("mlp-0", "10.243.0.2", 30443), Target("mlp-1", "10.243.1.2", 30443)), ("127.0.0.1/32",))
    assert {(f"{PREFIX}.1", 30443), (f"{PREFIX}.2", 30443)} <= set(want), "its node port answers at each node too"


def test_external_traffic_policy_local_checks_each_nodes_health_port(balancer):
    with_services(balancer, service("tb", externalTrafficPolicy="Local", healthCheckNodePort=32000))
    want, _ = wanted(balancer)
    assert [t.health_port for t in want[(f"{PREFIX}.64", 80)].targets] == [32000, 32000]
    assert want[(f"{PREFIX}.1", 30080)].targets[0].health_port is None, "a node port goes to its own node"


def test_a_load_balancer_of_another_class_gets_node_ports_only(balancer):
    with_services(balancer, service("other", loadBalancerClass="example.com/other"))
    want, _ = wanted(balancer)
    assert set(want) == {(f"{PREFIX}.1", 30080), (f"{PREFIX}.2", 30080)}


def test_udp_ports_and_ports_without_a_node_port_are_reported_not_relayed(balancer):
    with_services(balancer,
                  service("dns", type_="NodePort", ports=({"port": 53, "nodePort": 30053, "protocol": "UDP"},)),
                  service("pending", ports=({"port": 80},)),
                  service("internal", type_="ClusterIP", ports=({"port": 80},)))
    want, problems = wanted(balancer)
    assert want == {}
    assert problems == {"ns/dns": ["53/UDP is not relayed (TCP only)"],
                        "ns/pending": ["80/TCP has no nodePort to relay to"]}
