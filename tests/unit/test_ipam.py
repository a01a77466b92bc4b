"""Host-local IPAM on disk: allocation order, the same address for the same pod, exhaustion,
release, and state that outlives the object (a restarted kubelet)."""

from __future__ import annotations

import pytest

from kubelet.network.ipam import HostLocalIPAM, IPAMExhausted


def test_allocates_after_the_gateway_and_reuses_for_the_same_pod(tmp_path):
    ipam = HostLocalIPAM(tmp_path, "10.244.3.0/24")
    assert str(ipam.gateway) == "10.244.3.1"
    a = ipam.allocate("pod-a")
    b = ipam.allocate("pod-b")
    assert (a, b) == ("10.244.3.2", "10.244.3.3")
    assert ipam.allocate("pod-a") == a
    assert (tmp_path / a).read_text() == "pod-a"
    assert ipam.lookup("pod-b") == b and ipam.lookup("nobody") is None


def test_release_is_idempotent_and_round_robin(tmp_path):
    ipam = HostLocalIPAM(tmp_path, "10.244.3.0/24")
    a = ipam.allocate("pod-a")
    ipam.allocate("pod-b")
    assert ipam.release("pod-a") == [a]
    assert ipam.release("pod-a") == []
    assert not (tmp_path / a).exists()
    # The freed address is not handed out again at once.
    assert ipam.allocate("pod-c") == "10.244.3.4"


def test_exhaustion_and_wraparound(tmp_path):
    ipam = HostLocalIPAM(tmp_path, "10.244.3.0/29")  # .2 .. .6 usable
    got = [ipam.allocate(f"p{i}") for i in range(5)]
    assert got == [f"10.244.3.{n}" for n in range(2, 7)]
    with pytest.raises(IPAMExhausted):
        ipam.allocate("one-too-many")
    ipam.release("p1")
    assert ipam.allocate("late") == "10.244.3.3"


def test_state_survives_a_new_instance(tmp_path):
    first = HostLocalIPAM(tmp_path, "10.244.3.0/24")
    a = first.allocate("pod-a")
    first.allocate("pod-b")
    again = HostLocalIPAM(tmp_path, "10.244.3.0/24")
    assert again.allocate("pod-a") == a
    assert again.allocate("pod-c") == "10.244.3.4"
    assert again.allocations() == {a: "pod-a", "10.244.3.3": "pod-b", "10.244.3.4": "pod-c"}


def test_addresses_of_another_range_are_ignored(tmp_path):
    HostLocalIPAM(tmp_path, "10.244.3.0/24").allocate("old-pod")
    other = HostLocalIPAM(tmp_path, "10.244.4.0/24")
    assert other.allocations() == {}
    assert other.allocate("old-pod") == "10.244.4.2"


def test_interface_names_fit_the_kernel_limit():
    from kubelet.network.bridge import host_veth_name

    uid = "0d9c7a4e-5b1f-4c3e-9a4e-2f1b3c4d5e6f"
    assert host_veth_name(uid) == "vmk0d9c7a4e5b1f" and len(host_veth_name(uid)) <= 15
    assert len(host_veth_name("not-a-uuid")) == 15
