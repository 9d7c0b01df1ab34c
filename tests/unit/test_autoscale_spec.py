"""``roles.R.autoscale`` in farm files: what is accepted, the defaults, every problem named;
and the cron-like schedule windows."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.errors import SpecError
from farmhand.spec import parse_farm
from farmhand.spec.autoscale import parse_cron

FARM = """\
[roles.web]
command = "app --port {port}"
min = 1
max = 6
lb = { listen = "127.0.0.1:9000" }

[roles.web.autoscale]
"""


def farm(autoscale: str, role: str = "") -> str:
    text = FARM + textwrap.dedent(autoscale)
    return text.replace("max = 6\n", "max = 6\n" + role) if role else text


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_farm(text, "farm.toml")
    return [str(p) for p in caught.value.problems]


def test_a_target_alone_gets_the_documented_defaults() -> None:
    spec = parse_farm(farm('target = [{ metric = "requests_per_s", value = 100 }]'))
    scale = spec.roles["web"].autoscale
    assert scale is not None
    assert (scale.interval, scale.scale_up_stabilization, scale.scale_down_stabilization) == (1.0, 2.0, 60.0)
    assert (scale.max_growth, scale.max_growth_percent, scale.victims) == (4, 100.0, "newest")
    assert scale.target[0].tolerance == 0.1


def test_every_kind_of_policy_and_external_metrics_read_back() -> None:
    spec = parse_farm(farm("""\
        victims = "least-loaded"
        timezone = "Europe/Paris"
        [[roles.web.autoscale.threshold]]
        metric = "queue"
        above = 100
        below = 10
        for = "2m"
        add = 2
        [[roles.web.autoscale.schedule]]
        cron = "* 8-17 * * mon-fri"
        min = 3
        [roles.web.autoscale.external.queue]
        prometheus = "http://127.0.0.1:9100/metrics"
        metric = "jobs_waiting"
        labels = { queue = "mail" }
        [roles.web.autoscale.external.backlog]
        command = "echo 3"
        kind = "level"
        """))
    scale = spec.roles["web"].autoscale
    assert scale is not None
    assert scale.threshold[0].for_ == 120.0 and scale.threshold[0].add == 2
    assert scale.schedule[0].min == 3 and scale.schedule[0].when.matches(datetime(2026, 11, 25, 9, 30))
    assert scale.external["queue"].labels == {"queue": "mail"}
    assert scale.metric_info("queue").kind == "total" and scale.metric_info("backlog").kind == "level"


@pytest.mark.parametrize(("autoscale", "role", "expected"), [
    ("", "", "farm.toml:7: roles.web.autoscale: autoscale needs at least one policy"),
    ('target = [{ metric = "rps", value = 1 }]', "", "unknown metric 'rps' (known: active_connections, "
     "connections, cpu, load1, p95_ms, requests_per_s, rss_mb, waiting)"),
    ('target = [{ metric = "cpu", value = 0 }]', "", "roles.web.autoscale.target.0.value: 0: input should be greater than 0"),
    ('threshold = [{ metric = "cpu", above = 50, below = 60 }]', "", "below (60) must be under above (50), or it would flap"),
    ('threshold = [{ metric = "cpu" }]', "", "a threshold needs above = X, below = Y, or both"),
    ('threshold = [{ metric = "cpu", above = 50, for = 30 }]', "", '30 is not a duration: write it with a unit, such as "30s"'),
    ('schedule = [{ cron = "* 8-17 * *", min = 2 }]', "", "give 5 fields, minute hour day month weekday"),
    ('schedule = [{ cron = "* 25 * * *", min = 2 }]', "", 'cron hour "25": "25" is not within 0-23'),
    ('schedule = [{ cron = "* * * * *" }]', "", "a schedule window changes min, max or both"),
    ('schedule = [{ cron = "* * * * *", min = 9 }]', "", "schedule window '* * * * *': 9 is outside the role's min/max (1..6)"),
    ('victims = "random"\ntarget = [{ metric = "cpu", value = 50 }]', "", "roles.web.autoscale.victims"),
    ('timezone = "Mars/Base"\ntarget = [{ metric = "cpu", value = 50 }]', "", '"Mars/Base" is not a time zone'),
    ('target = [{ metric = "cpu", value = 50 }]\n[roles.web.autoscale.external.q]\ncommand = "x"\nprometheus = "http://a"',
     "", "give either prometheus"),
    ('target = [{ metric = "cpu", value = 50 }]\n[roles.web.autoscale.external.cpu]\ncommand = "x"', "",
     "external metric 'cpu' has the name of a built-in metric"),
    ('target = [{ metric = "cpu", value = 50 }]\n[roles.web.autoscale.external.q]\nprometheus = "http://a"', "",
     'a prometheus metric needs metric = "name"'),
])
def test_problems_are_named(autoscale: str, role: str, expected: str) -> None:
    found = problems(farm(autoscale, role))
    assert any(expected in p for p in found), found


def test_autoscaling_needs_min_and_max_and_a_balancer_for_its_metrics() -> None:
    text = farm('target = [{ metric = "requests_per_s", value = 100 }]')
    assert problems(text.replace("min = 1\nmax = 6\n", "count = 2\n")) == [
        "farm.toml:1: roles.web: autoscale needs min and max (instead of count)"]
    assert problems(text.replace('lb = { listen = "127.0.0.1:9000" }\n', "")) == [
        "farm.toml:1: roles.web: autoscale on requests_per_s needs a load balancer (lb = { listen = ... })"]
    parse_farm(text.replace("requests_per_s", "cpu").replace('lb = { listen = "127.0.0.1:9000" }\n', ""))


# cron windows -----------------------------------------------------------------------------

@pytest.mark.parametrize(("cron", "when", "matches"), [
    ("* * * * *", datetime(2026, 1, 1, 0, 0), True),
    ("* 8-17 * * mon-fri", datetime(2026, 11, 25, 17, 59), True),   # a Wednesday
    ("* 8-17 * * mon-fri", datetime(2026, 11, 25, 18, 0), False),
    ("* 8-17 * * mon-fri", datetime(2026, 11, 28, 9, 0), False),    # a Saturday
    ("*/15 * * * *", datetime(2026, 1, 1, 3, 45), True),
    ("*/15 * * * *", datetime(2026, 1, 1, 3, 46), False),
    ("0-29 9 * * *", datetime(2026, 1, 1, 9, 29), True),
    ("* * 1 dec *", datetime(2026, 12, 1, 12, 0), True),
    ("* * 1 dec *", datetime(2026, 11, 1, 12, 0), False),
    ("* * * * 0", datetime(2026, 11, 29, 12, 0), True),             # Sunday as 0
    ("* * * * 7", datetime(2026, 11, 29, 12, 0), True),             # and as 7
    ("* * 1 * mon", datetime(2026, 11, 30, 12, 0), True),           # day or weekday (a Monday)
    ("* * 1 * mon", datetime(2026, 12, 1, 12, 0), True),            # (the 1st, a Tuesday)
    ("* * 1 * mon", datetime(2026, 12, 2, 12, 0), False),
    ("* * */2 * mon", datetime(2026, 12, 3, 12, 0), False),         # Vixie: "*/2" counts as "*"
    ("5,10-12/2 * * * *", datetime(2026, 1, 1, 0, 12), True),
    ("5,10-12/2 * * * *", datetime(2026, 1, 1, 0, 11), False),
    ("30/10 * * * *", datetime(2026, 1, 1, 0, 50), True),
])
def test_cron_windows(cron: str, when: datetime, matches: bool) -> None:
    assert parse_cron(cron).matches(when) is matches


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* * 0 * *", "* * * 13 *", "* * * * mon-xyz",
                                 "5-1 * * * *", "*/0 * * * *", "a * * * *", "* * * * monday"])
def test_bad_cron_times_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cron(bad)


@given(st.integers(0, 59), st.integers(0, 23), st.datetimes(min_value=datetime(2000, 1, 1),
                                                              max_value=datetime(2100, 1, 1)))
def test_a_single_minute_matches_only_itself(minute: int, hour: int, when: datetime) -> None:
    assert parse_cron(f"{minute} {hour} * * *").matches(when) == (when.minute == minute and when.hour == hour)
