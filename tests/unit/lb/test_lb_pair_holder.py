"""Who holds a pair's address, and the events its moves make (lb/pair.py), from members'
views alone: no host, no connection (building the handle connects to nothing)."""

from __future__ import annotations

from pathlib import Path

from farmhand.lb.pair import MemberView, PairDataPlane
from tests.unit.lb.pairkit import pair_farm, pair_plane

FARM = pair_farm()


def plane(tmp_path: Path) -> PairDataPlane:
    return pair_plane(FARM, tmp_path)


def see(p: PairDataPlane, **views: MemberView) -> list[tuple[str, str]]:
    p.views.update(views)
    p._follow_holder()
    return p.take_events()


def test_members_listen_on_all_addresses_at_the_listeners_port(tmp_path: Path) -> None:
    p = plane(tmp_path)
    settings = p.members["lb1"].plan.settings
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 8080)
    assert [m.plan.index for m in p.members.values()] == [0, 1]


def test_first_holder_then_a_move_with_its_reason(tmp_path: Path) -> None:
    p = plane(tmp_path)
    events = see(p, lb1=MemberView("MASTER", 1.0, "running", True), lb2=MemberView("BACKUP", 1.0, "running", True))
    assert events == [("lb.vip_held", "role web: 10.213.0.100 is held by lb1")]
    assert p.pair_view()["holder"] == "lb1"
    events = see(p, lb1=MemberView("FAULT", 2.0, "down", True), lb2=MemberView("MASTER", 2.1, "running", True))
    assert events == [("lb.vip_moved", "role web: 10.213.0.100 moved to lb2 at 2.100; lb1 lost its load balancer")]
    assert see(p) == [], "no second event for the same holder"


def test_a_holder_out_of_reach_is_kept_until_another_says_master(tmp_path: Path) -> None:
    p = plane(tmp_path)
    see(p, lb1=MemberView("MASTER", 1.0, "running", True), lb2=MemberView("BACKUP", 1.0, "running", True))
    assert see(p, lb1=MemberView("MASTER", 1.0, "down", False)) == []
    assert p.pair_view()["holder"] == "lb1"
    events = see(p, lb2=MemberView("MASTER", 3.0, "running", True))
    assert events == [("lb.vip_moved", "role web: 10.213.0.100 moved to lb2 at 3.000; lb1 is out of reach (host or link down)")]


def test_the_old_holder_back_as_backup_moves_nothing(tmp_path: Path) -> None:
    p = plane(tmp_path)
    see(p, lb1=MemberView("FAULT", 1.0, "running", True), lb2=MemberView("MASTER", 1.0, "running", True))
    assert see(p, lb1=MemberView("BACKUP", 5.0, "running", True)) == []
    assert p.pair_view()["holder"] == "lb2"


def test_nobody_holding_it_is_said_when_a_second_read_agrees(tmp_path: Path) -> None:
    p = plane(tmp_path)
    see(p, lb1=MemberView("MASTER", 1.0, "running", True), lb2=MemberView("BACKUP", 1.0, "running", True))
    assert see(p, lb1=MemberView("FAULT", 2.0, "running", True), lb2=MemberView("FAULT", 2.0, "running", True)) == []
    assert see(p) == [("lb.vip_lost", "role web: no member holds 10.213.0.100 (last holder lb1: went FAULT)")]
    assert see(p, lb1=MemberView("MASTER", 3.0, "running", True)) == [("lb.vip_held", "role web: 10.213.0.100 is held by lb1 again")]


def test_a_read_between_fault_and_master_still_tells_a_move(tmp_path: Path) -> None:
    p = plane(tmp_path)
    see(p, lb1=MemberView("MASTER", 1.0, "running", True), lb2=MemberView("BACKUP", 1.0, "running", True))
    assert see(p, lb1=MemberView("FAULT", 2.0, "down", True)) == []
    events = see(p, lb2=MemberView("MASTER", 2.1, "running", True))
    assert events == [("lb.vip_moved", "role web: 10.213.0.100 moved to lb2 at 2.100; lb1 lost its load balancer")]


def test_a_first_holder_after_none_is_held_not_moved_and_stopping_says_nothing(tmp_path: Path) -> None:
    p = plane(tmp_path)
    assert see(p, lb1=MemberView("BACKUP", 1.0, "running", True), lb2=MemberView("BACKUP", 1.0, "running", True)) == []
    assert see(p, lb1=MemberView("MASTER", 2.0, "running", True)) == [("lb.vip_held", "role web: 10.213.0.100 is held by lb1")]
    p._stopping = True
    assert see(p, lb1=MemberView("STOP", 3.0, "running", True)) == []
