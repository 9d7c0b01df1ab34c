"""The reverse lookup's steps, driven with made-up DNS answers (no DNS). Pure."""

from __future__ import annotations

import pytest

from farmhand.gate.rdns import Rdns
from farmhand.gate.resolve import Answer, lookup_steps, servers_from_env


def drive(ip: str, answers: dict[tuple[str, str], Answer]) -> tuple[Rdns, list[tuple[str, str]]]:
    asked: list[tuple[str, str]] = []
    steps = lookup_steps(ip)
    question = next(steps)
    while True:
        asked.append(question)
        try:
            question = steps.send(answers.get(question, "nxdomain"))
        except StopIteration as done:
            return done.value, asked


PTR4 = ("10.2.0.192.in-addr.arpa", "PTR")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({}, Rdns("no_ptr")),
        ({PTR4: "failure"}, Rdns("dns_failure")),
        ({PTR4: []}, Rdns("no_ptr")),
        ({PTR4: ["MX.Example.com."], ("mx.example.com", "A"): ["192.0.2.10"]}, Rdns("confirmed", "mx.example.com")),
        ({PTR4: ["mx.example.com."], ("mx.example.com", "A"): ["192.0.2.99"]}, Rdns("mismatch", "mx.example.com")),
        ({PTR4: ["mx.example.com."]}, Rdns("mismatch", "mx.example.com")),
        ({PTR4: ["mx.example.com."], ("mx.example.com", "A"): "failure"}, Rdns("dns_failure", "mx.example.com")),
        ({PTR4: ["a.example.", "b.example."], ("b.example", "A"): ["192.0.2.10"]}, Rdns("confirmed", "b.example")),
    ],
)
def test_ipv4(answers: dict[tuple[str, str], Answer], expected: Rdns) -> None:
    assert drive("192.0.2.10", answers)[0] == expected


def test_ipv6_asks_aaaa() -> None:
    ptr = ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR")
    result, asked = drive("2001:db8::1", {ptr: ["v6.example."], ("v6.example", "AAAA"): ["2001:db8:0::1"]})
    assert result == Rdns("confirmed", "v6.example") and asked[-1] == ("v6.example", "AAAA")


def test_at_most_three_names_are_checked() -> None:
    names = [f"n{i}.example." for i in range(10)]
    _, asked = drive("192.0.2.10", {PTR4: names})
    assert len(asked) == 4


@pytest.mark.parametrize(
    ("value", "servers"),
    [("", None), ("127.0.0.1", [("127.0.0.1", 53)]), ("127.0.0.1 ::1,x", [("127.0.0.1", 53), ("::1", 53)])],
)
def test_dnscacheip(value: str, servers: list[tuple[str, int]] | None) -> None:
    assert servers_from_env({"DNSCACHEIP": value}) == servers
