"""The generated HAProxy config and the parsing of its stats."""

from __future__ import annotations

from farmhand.dataplane import Backend
from farmhand.lb.haproxy import config as hc
from farmhand.lb.settings import CheckSettings, EngineSettings

HTTP = EngineSettings(role="web", listen_host="127.0.0.1", listen_port=8080, workers=2,
                      check=CheckSettings(type="http", path="/up", status=204, rise=2))


def test_http_config_has_the_zero_failure_settings() -> None:
    text = hc.render(HTTP, "/run/x", [Backend("n1", "127.0.0.1", 9001, weight=3)])
    for line in (
        "retries 3", "option redispatch 1", "retry-on all-retryable-errors", "option forwardfor",
        "http-request disable-l7-retry unless idempotent", "http-request set-header X-Forwarded-Proto http",
        "stats socket /run/x/admin.sock mode 600 level admin expose-fd listeners", "nbthread 2",
        "option httpchk GET /up", "http-check expect status 204", "bind 127.0.0.1:8080",
    ):
        assert line in text, line
    assert "server n1 127.0.0.1:9001 weight 3 check" in text
    assert "observe layer4 error-limit 1 on-error mark-down" in text and "rise 2" in text


def test_the_listener_is_exclusive_and_the_head_has_its_own_deadline() -> None:
    settings = EngineSettings(role="web", listen_host="127.0.0.1", listen_port=8080, client_timeout=60.0,
                              http_request_timeout=4.0)
    text = hc.render(settings, "/run/x", [])
    assert "    noreuseport" in text  # issue 10 #3: no second balancer can join the port
    assert "timeout http-request 4000ms" in text and "timeout client 60000ms" in text


def test_tcp_config_has_no_http_only_settings_and_source_is_consistent() -> None:
    settings = EngineSettings(role="db", listen_host="::1", listen_port=5432, mode="tcp", balance="source")
    text = hc.render(settings, "/r", [])
    assert "retry-on" not in text and "forwardfor" not in text and "httpchk" not in text
    assert "balance source" in text and "hash-type consistent" in text
    assert "bind [::1]:5432" in text and "option redispatch 1" in text


def test_server_names_are_made_safe() -> None:
    assert hc.server_name("web-1.a:b_c") == "web-1.a:b_c"
    assert hc.server_name("web 1/x") == "web_1_x"


STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,rate,req_rate,req_tot,ttime,ctime,addr,uweight
fe_web,FRONTEND,,,5,9,9900,120,1000,2000,0,0,1,,,,,OPEN,,,33,30,118,,,,
be_web,n1,0,0,2,3,,60,500,1000,,0,,0,0,1,0,UP,1,1,,,59,4,0,127.0.0.1:9001,1
be_web,n2,0,0,0,3,,60,500,1000,,0,,2,0,0,1,DOWN,1,1,,,59,5,0,127.0.0.1:9002,1
be_web,BACKEND,1,0,2,3,990,120,1000,2000,0,0,,2,0,1,1,UP,2,2,,,118,4,0,,
"""


def test_stats_are_summarised_in_farmhands_shape() -> None:
    rows = hc.parse_stat(STAT)
    wanted = {"n1": Backend("node-1", "127.0.0.1", 9001)}
    stats = hc.summarize(HTTP, rows, wanted, removing=set())
    assert stats["requests_per_s"] == 30.0 and stats["active_connections"] == 5 and stats["waiting"] == 1
    assert stats["p95_ms"] == 4.0
    listener = stats["listeners"]["127.0.0.1:8080"]
    assert listener["requests"] == 118 and listener["retries"] == 2
    assert stats["backends"]["node-1"]["requests"] == 59 and stats["backends"]["node-1"]["ejected"] is False
    assert stats["backends"]["n2"]["ejected"] is True and stats["backends"]["n2"]["state"] == "removed"
    assert stats["backends"]["n2"]["retries"] == 1 and stats["backends"]["n2"]["errors"] == 2
