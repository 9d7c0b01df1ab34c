"""``smtp-delay``: the greet delay as a link in a ucspi-tcp chain.

    tcpserver -R -H 0 25 smtp-delay [options] rblsmtpd -r zen.example qmail-smtpd

One process per connection, like the rest of the chain: it reads the client from tcpserver's
variables, finds its class (from TCPREMOTEHOST when tcpserver looked the name up, else by its
own PTR lookup with forward confirmation; tcpserver's name is taken as it is, so run tcpserver
with ``-p`` or ``-H`` to get mismatches classed as such), waits that class's delay while
watching the socket without reading it, then:

- the client stayed quiet: runs the next program with the environment untouched;
- the client talked first: sets RBLSMTPD to the refusal text ("-text" with ``-b``) and runs
  the next program, so rblsmtpd answers 451 (553); with ``-S`` answers itself instead;
- the client hung up: runs nothing.

Exit status: 100 for a usage error, 111 when not run by tcpserver (no TCPREMOTEIP) or the next
program cannot be run, 0 otherwise. The time spent on DNS counts toward the delay.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import MutableMapping, Sequence

from farmhand.gate.chain_options import (
    EXIT_TEMPORARY,
    EXIT_USAGE,
    USAGE,
    ChainClient,
    ChainOptions,
    MissingRemoteIp,
    parse_args,
    read_client,
)
from farmhand.gate.policy import GateUsageError, Verdict, remaining_delay, verdict_for
from farmhand.gate.rdns import Rdns, RdnsClass, classify
from farmhand.gate.watch import check_now, reply_and_drain, watch

STANDALONE_DRAIN = 5.0
"""Seconds a refused client gets to read the reply and close (``-S``)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run as the ``smtp-delay`` command; returns the exit status (or replaces the process)."""
    started = time.monotonic()
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except GateUsageError as error:
        _say(f"{error}\n{USAGE}")
        return EXIT_USAGE
    for warning in options.policy.warnings():
        _say(f"warning: {warning}")
    try:
        client = read_client(os.environ)
    except MissingRemoteIp as error:
        _say(str(error))
        return EXIT_TEMPORARY
    if client.skip is not None:
        _log(options, client, None, None, 0.0, "skip", started, note=client.skip)
        return _run(options.program, os.environ)
    rdns = Rdns("confirmed", client.host) if client.host else _lookup(client.ip, options)
    klass = classify(rdns, client.ip, options.policy.rules)
    delay = options.policy.delay_for(klass)
    seen = watch(0, remaining_delay(delay, time.monotonic() - started))
    if seen == "quiet":
        seen = check_now(0)
    verdict = verdict_for(seen)
    _log(options, client, rdns.name, klass, delay, verdict, started)
    if verdict == "hangup":
        return 0
    env = os.environ
    if verdict == "talker":
        if options.standalone:
            reply_and_drain(0, 1, options.policy.reply(), STANDALONE_DRAIN)
            return 0
        env["RBLSMTPD"] = options.policy.rblsmtpd_value()
    return _run(options.program, env)


def _lookup(ip: str, options: ChainOptions) -> Rdns:
    """Our own PTR + forward lookup; a resolver that cannot even be set up is a DNS failure."""
    from farmhand.gate import resolve

    try:
        resolver = resolve.blocking_resolver(resolve.servers_from_env(os.environ))
    except Exception:  # no /etc/resolv.conf, unreadable, no servers in it
        return Rdns("dns_failure")
    return resolve.lookup_blocking(resolver, ip, options.dns_timeout)


def _run(program: Sequence[str], env: MutableMapping[str, str]) -> int:
    """Replace this process with the next program (so it inherits the socket as fd 0/1)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(program[0], list(program), dict(env))
    except OSError as error:
        _say(f"cannot run {program[0]}: {error.strerror}")
    return EXIT_TEMPORARY


def _say(message: str) -> None:
    sys.stderr.write(f"smtp-delay: {message}\n")
    sys.stderr.flush()


def _log(
    options: ChainOptions,
    client: ChainClient,
    name: str | None,
    klass: RdnsClass | None,
    delay: float | None,
    verdict: Verdict,
    started: float,
    note: str | None = None,
) -> None:
    """``-v``: one line per connection, key=value so it greps and parses."""
    if not options.verbose:
        return
    waited = time.monotonic() - started
    fields = [
        f"pid={os.getpid()}",
        f"ip={client.ip}",
        f"name={name or client.host or '-'}",
        f"class={klass or '-'}",
        f"delay={delay:g}" if delay is not None else "delay=-",
        f"verdict={verdict}",
        f"waited={waited:.3f}",
    ]
    if note:
        fields.append(f"why={note}")
    _say(" ".join(fields))


if __name__ == "__main__":
    sys.exit(main())
