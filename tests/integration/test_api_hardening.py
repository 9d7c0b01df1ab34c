"""The API's front door against hostile and careless clients (issue 10, items 6, 11, 12, 15,
16 and 18), on one real farm started with `farmhand up --detach`: raw sockets where the
attack is in the bytes (a head that never ends, a body announced and never sent), httpx
where it is in the headers."""

from __future__ import annotations

import socket
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.integration.farmkit import Farm

pytestmark = pytest.mark.slow

FARM = textwrap.dedent("""\
    [farm]
    name = "hardening"
    api_hosts = ["farm.example"]

    [roles.web]
    command = "python3 app.py --port {port} --node {node}"
    count = 1
    stop_grace = "2s"
    """)
ANSWER_WITHIN = 20.0
"""Longest wait for an answer the server should give at once (a deadline, not a duration)."""


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """One farm for the whole module: every test here only reads or is refused."""
    farm = Farm(tmp_path_factory.mktemp("hardening") / "farm", FARM)
    try:
        farm.up()
        farm.wait_ready("web", 1)
        yield farm
    finally:
        farm.cleanup()


def address(farm: Farm) -> tuple[str, int]:
    url, _ = farm.api()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host.strip("[]"), int(port)


def raw_exchange(farm: Farm, head: bytes, body_chunks: Sequence[bytes] = ()) -> bytes:
    """Send ``head`` (and chunks) on a fresh connection; return what the server answered
    until it closed or ``ANSWER_WITHIN`` passed. A reset after an answer still counts."""
    answer = b""
    with socket.create_connection(address(farm), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        deadline = time.monotonic() + ANSWER_WITHIN
        try:
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
        except TimeoutError:
            pass
        except ConnectionResetError:
            if not answer:
                raise
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), f"no HTTP answer, got {answer[:200]!r}"
    return int(answer.split(b" ", 2)[1])


def request_head(farm: Farm, method: str, path: str, *headers: str) -> bytes:
    host, port = address(farm)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_a_huge_body_is_refused_from_its_head_before_a_byte_of_it_is_read(farm: Farm) -> None:
    # 300 MB announced, none sent: an answer can only come if the server did not wait for it.
    announced = "Content-Length: 300000000"
    no_token = raw_exchange(farm, request_head(farm, "POST", "/api/roles/web/scale", announced,
                                               "Content-Type: application/json"))
    assert status_of(no_token) == 401, no_token
    assert b"www-authenticate: bearer" in no_token.lower() and b"connection: close" in no_token.lower()

    _, token = farm.api()
    with_token = raw_exchange(farm, request_head(farm, "POST", "/api/roles/web/scale", announced,
                                                 f"Authorization: Bearer {token}", "Content-Type: application/json"))
    assert status_of(with_token) == 413, with_token
    assert b"at most 65536 bytes" in with_token and b'"field": "body"' in with_token


def test_a_body_without_a_length_is_counted_and_refused_at_the_limit(farm: Farm) -> None:
    _, token = farm.api()
    head = request_head(farm, "POST", "/api/roles/web/scale", f"Authorization: Bearer {token}",
                        "Content-Type: application/json", "Transfer-Encoding: chunked")
    piece = b" " * 16384
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 5  # 80 KiB, never terminated
    answer = raw_exchange(farm, head, chunks)
    assert status_of(answer) == 413, answer
    assert farm.status()["roles"][0]["wanted"] == 1, "a refused change changes nothing"


def test_the_token_must_come_in_the_bearer_scheme(farm: Farm) -> None:
    url, token = farm.api()

    def scale(authorization: bytes | None) -> httpx.Response:
        """A scale to -1: let through, it is refused by the route (422), never applied."""
        headers = {b"Authorization": authorization} if authorization is not None else {}
        return httpx.post(f"{url}/api/roles/web/scale", json={"count": -1}, headers=headers,
                          timeout=ANSWER_WITHIN, trust_env=False)

    for missing in (None, b"", b"Bearer", token.encode(), b"Basic " + token.encode()):
        answer = scale(missing)
        assert answer.status_code == 401, (missing, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer"), missing
        assert answer.json()["field"] == "authorization"
    for wrong in (b"Bearer wrong", b"Bearer " + token.encode() + b"x", b"Bearer \xe9t\xe9"):
        answer = scale(wrong)
        assert answer.status_code == 403 and "wrong token" in answer.json()["error"], (wrong, answer.text)
    for right in (b"Bearer ", b"bearer ", b"BEARER  "):
        answer = scale(right + token.encode())
        assert answer.status_code == 422 and answer.json()["field"] == "count", (right, answer.text)


def test_only_the_apis_own_names_are_accepted_in_host(farm: Farm) -> None:
    url, _ = farm.api()
    host, port = address(farm)
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN, trust_env=False) as client:
        for good in (f"{host}:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"farm.example:{port}"):
            assert client.get("/api/status", headers={"Host": good}).status_code == 200, good
        for evil in ("evil.example", f"evil.example:{port}", f"localhost:{port + 1}", f"{host}", "", "[::1"):
            for path in ("/api/status", "/", "/api/nodes/web-1/log", "/metrics"):
                answer = client.get(path, headers={"Host": evil})
                assert answer.status_code == 400, (evil, path, answer.status_code)
                assert "Host not allowed" in answer.json()["error"] and answer.json()["field"] == "host"


def test_the_logs_route_refuses_bad_offsets_and_node_ids_naming_the_field(farm: Farm) -> None:
    url, _ = farm.api()
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN, trust_env=False) as client:
        assert b"web-1 listening on" in client.get("/api/nodes/web-1/log").content
        assert client.get("/api/nodes/web-1/log", params={"offset": 10**12}).content == b"", "past the end: empty"
        for offset in (-1, 10**30, "x"):
            answer = client.get("/api/nodes/web-1/log", params={"offset": offset})
            assert answer.status_code == 422 and answer.json()["field"] == "offset", (offset, answer.text)
            assert answer.json()["error"].startswith("offset: ")
        for junk in ("web-1%00", "%00", "web-1.log", "WEB-1", "web-", "a" * 300 + "-1", "web-1%0A"):
            answer = client.get(f"/api/nodes/{junk}/log")
            assert answer.status_code == 400 and answer.json()["field"] == "node", (junk, answer.text)
            assert "is not a node id" in answer.json()["error"]
        assert client.get("/api/nodes/web-99/log").status_code < 500


def test_a_connection_that_trickles_its_head_is_closed(farm: Farm) -> None:
    """One byte a second, as slowloris does; the server must close the connection within a
    generous deadline (its own is 10 s for a whole head)."""
    head = request_head(farm, "GET", "/api/status", "X-Slow: " + "a" * 200)
    closed_by_server = False
    answer = b""
    with socket.create_connection(address(farm), timeout=1.0) as sock:
        deadline = time.monotonic() + 60
        for byte in head[:-4]:  # never the blank line that ends the head
            if time.monotonic() > deadline:
                break
            try:
                sock.sendall(bytes([byte]))
                data = sock.recv(4096)  # waits up to the socket's 1 s timeout: the pace
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_by_server = True
                break
            answer += data
            if not data:
                closed_by_server = True
                break
    assert closed_by_server, "a head trickled a byte a second was held for a minute"
    assert not answer or status_of(answer) == 408


def test_an_idle_connection_and_an_oversized_head_are_refused(farm: Farm) -> None:
    with socket.create_connection(address(farm), timeout=60) as sock:
        assert status_of(sock.recv(4096)) == 408, "a connection that sends nothing is closed with 408"
    answer = raw_exchange(farm, request_head(farm, "GET", "/api/status", "X-Big: " + "a" * 70_000))
    assert status_of(answer) == 431
    assert httpx.get(farm.api()[0] + "/api/status", timeout=ANSWER_WITHIN, trust_env=False).status_code == 200


def test_the_token_is_in_no_log(farm: Farm) -> None:
    _, token = farm.api()
    # `up --detach` wrote the controller's output to controller.log; a refused call and a
    # failing one with the token in hand leave no trace of it either
    farm.post("/api/roles/nope/scale", {"count": 1})
    farm.post("/api/roles/web/scale", {"count": 1}, token=token + "x")
    logs = [farm.state.controller_log, *Path(farm.state.path).rglob("*.log")]
    for log in logs:
        assert token not in log.read_text(errors="replace"), f"the token is in {log}"
