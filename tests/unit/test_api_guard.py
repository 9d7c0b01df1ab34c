"""The API guard's decisions, without a server: which Host names the API, which
Authorization carries the token, which body length is announced."""

from __future__ import annotations

import pytest

from farmhand.api.guard import announced_length, check_bearer, host_allowed, split_host

SERVER = ("127.0.0.1", 8000)


@pytest.mark.parametrize(("value", "parsed"), [
    ("127.0.0.1:8000", ("127.0.0.1", 8000)),
    ("LocalHost", ("localhost", None)),
    ("[::1]:8000", ("::1", 8000)),
    ("[::1]", ("::1", None)),
    ("::1", None),
    ("[::1", None),
    ("[::1]x", None),
    ("a:b", None),
    ("a:0", None),
    ("a:70000", None),
    (":80", None),
    ("", None),
])
def test_host_values_are_split_or_refused(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(value) == parsed


@pytest.mark.parametrize(("host", "server", "names", "allowed"), [
    ("127.0.0.1:8000", SERVER, (), True),
    ("localhost:8000", SERVER, (), True),
    ("[::1]:8000", SERVER, (), True),
    ("localhost:8001", SERVER, (), False),
    ("evil.example:8000", SERVER, (), False),
    ("evil.example", SERVER, (), False),
    ("127.0.0.1", SERVER, (), False),            # no port means 80
    ("127.0.0.1", ("127.0.0.1", 80), (), True),
    ("10.0.0.5:8000", ("10.0.0.5", 8000), (), True),   # listening on 0.0.0.0: the address used
    ("farm.example", SERVER, ("farm.example",), True),  # behind a proxy, no port
    ("farm.example:8000", SERVER, ("farm.example",), True),
    ("farm.example:9000", SERVER, ("farm.example",), False),
    ("farm.example:9000", SERVER, ("farm.example:9000",), True),
    (None, SERVER, (), False),
])
def test_only_the_apis_own_names_are_hosts(host: str | None, server: tuple[str, int], names: tuple[str, ...],
                                           allowed: bool) -> None:
    assert host_allowed(host, server, names) is allowed


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("", 401), ("Bearer", 401), ("Bearer   ", 401), ("secret", 401), ("Basic secret", 401),
    ("Bearer wrong", 403), ("Bearer secretx", 403), ("Bearer s\xe9cret", 403),
    ("Bearer secret", None), ("bearer secret", None), ("BEARER   secret ", None),
])
def test_the_token_comes_in_the_bearer_scheme(header: str | None, status: int | None) -> None:
    refusal = check_bearer(header, "secret")
    assert (refusal.status if refusal else None) == status
    if refusal is not None and refusal.status == 401:
        assert dict(refusal.headers)["www-authenticate"].startswith("Bearer")


def test_an_announced_length_is_one_whole_number() -> None:
    assert announced_length({}) is None
    assert announced_length({b"content-length": [b"12"]}) == 12
    assert announced_length({b"content-length": [b"12", b"12"]}) == 12
    for bad in ([b"12", b"13"], [b"-1"], [b"1e3"], [b""]):
        refusal = announced_length({b"content-length": bad})
        assert not isinstance(refusal, int) and refusal is not None and refusal.status == 400
