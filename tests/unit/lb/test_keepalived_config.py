"""keepalived's generated configuration for a load-balancer pair member (pure: no host)."""

from __future__ import annotations

import pytest

from farmhand.lb.keepalived_config import (
    MemberConfig,
    Transition,
    check_script,
    keepalived_conf,
    notify_script,
    parse_states,
)


def member(**overrides: object) -> MemberConfig:
    fields: dict[str, object] = {
        "role": "web-api", "host": "lb1", "index": 0, "vip": "10.213.0.100/24", "interface": "eth0",
        "vrrp_id": 51, "check_port": 8080, "check_script": "/srv/fh/check", "notify_script": "/srv/fh/notify",
        "state_file": "/srv/fh/states", "track_file": "/srv/fh/alive",
    }
    fields.update(overrides)
    return MemberConfig(**fields)  # type: ignore[arg-type]


def test_vrrp3_fast_adverts_backup_nopreempt_by_default() -> None:
    conf = keepalived_conf(member())
    assert "vrrp_version 3" in conf
    assert "advert_int 0.1\n" in conf
    assert "state BACKUP" in conf and "nopreempt" in conf
    assert "virtual_router_id 51" in conf
    assert "10.213.0.100/24 dev eth0" in conf
    assert "vrrp_instance farmhand_web_api {" in conf


def test_preempt_drops_nopreempt_and_priorities_follow_the_order() -> None:
    assert "nopreempt" not in keepalived_conf(member(preempt=True))
    assert "priority 150" in keepalived_conf(member(index=0))
    assert "priority 140" in keepalived_conf(member(index=1))
    assert member(index=100).priority == 1


def test_balancer_is_tracked_by_script_and_by_file() -> None:
    conf = keepalived_conf(member())
    assert 'script "/srv/fh/check"' in conf and "interval 1\n" in conf
    assert "track_script {\n        farmhand_balancer\n" in conf
    assert 'track_file farmhand_balancer_alive {\n    file "/srv/fh/alive"\n    weight 0\n' in conf
    assert "track_file {\n        farmhand_balancer_alive weight 0\n" in conf
    assert 'notify "/srv/fh/notify"' in conf
    assert "track_file" not in keepalived_conf(member(track_file=""))


def test_gratuitous_arp_at_once_and_repeated() -> None:
    conf = keepalived_conf(member())
    assert "vrrp_garp_master_repeat 3" in conf


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        keepalived_conf(member(vip="10.213.0.300/24"))
    with pytest.raises(ValueError):
        keepalived_conf(member(check_script='/srv/"x'))


def test_scripts() -> None:
    assert "/dev/tcp/127.0.0.1/8080" in check_script(8080)
    assert "date +%s.%N) $3\" >> '/srv/my states'" in notify_script("/srv/my states")


def test_state_file_parsing_skips_what_it_cannot_read() -> None:
    text = "1700000000.5 BACKUP\ngarbage\n1700000001.25 MASTER\n17000 NOPE\nxx FAULT\n1700000002"
    assert parse_states(text) == [Transition(1700000000.5, "BACKUP"), Transition(1700000001.25, "MASTER")]
