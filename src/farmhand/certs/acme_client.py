"""One ACME (RFC 8555) order, through certbot's ``acme`` package: account, order, HTTP-01
challenges, finalize, download.

Blocking (the package speaks ``requests``): the controller runs ``issue`` in a thread, the
one place farmhand lets a library force one. The HTTP-01 answers are handed to ``publish``
(token -> key authorization) before the server is asked to validate, and the balancer's
plain listener serves them; ``publish({})`` withdraws them at the end.

Every failure becomes a ``CertError`` carrying the ACME server's own words (its problem
document's detail, or the failed challenge's error), which is what the user needs to fix
DNS, a firewall or a rate limit.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization
from josepy import jwa
from josepy import jwk as jose_jwk

from farmhand.certs import CertError, pem

ORDER_DEADLINE = 90.0
"""Seconds an order may take from the first challenge answered to the certificate."""
Publish = Callable[[dict[str, str]], None]


def _reason(error: BaseException) -> str:
    """The server's reason for a failed order, as plainly as it gave it."""
    if isinstance(error, errors.ValidationError):
        found = []
        for authz in error.failed_authzrs:
            for challenge in authz.body.challenges:
                if challenge.error is not None:
                    found.append(f"{authz.body.identifier.value}: {challenge.error.detail or challenge.error.typ}")
        return "; ".join(found) or "the server could not validate the names"
    if isinstance(error, messages.Error):
        return str(error.detail or error.typ)
    if isinstance(error, errors.TimeoutError):
        return f"the order did not finish within {ORDER_DEADLINE:.0f}s"
    return f"{type(error).__name__}: {error}"


def issue(*, directory: str, names: tuple[str, ...], account_key: bytes, email: str | None,
          ca_file: str | None, publish: Publish) -> bytes:
    """Obtain a certificate for ``names``: its chain and a fresh private key, one PEM."""
    try:
        return _issue(directory, names, account_key, email, ca_file, publish)
    except CertError:
        raise
    except Exception as error:  # the package raises requests', josepy's and its own errors
        raise CertError(f"ACME order for {', '.join(names)} at {directory} failed: {_reason(error)}") from error
    finally:
        publish({})


def _issue(directory: str, names: tuple[str, ...], account_key: bytes, email: str | None,
           ca_file: str | None, publish: Publish) -> bytes:
    key = serialization.load_pem_private_key(account_key, password=None)
    account = jose_jwk.JWKEC(key=key)
    verify: Any = ca_file if ca_file else True  # requests takes a CA bundle's path here
    net = client.ClientNetwork(account, alg=jwa.ES256, verify_ssl=verify, user_agent="farmhand")
    acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as known:  # this key already has an account: use it
        net.account = messages.RegistrationResource(uri=known.location, body=messages.Registration())
    cert_key = pem.new_key()
    order = acme.new_order(pem.csr(cert_key, names))
    answers: dict[str, str] = {}
    to_answer = []
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_VALID:
            continue
        http01 = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
        if http01 is None:
            raise CertError(f"the ACME server offers no HTTP-01 challenge for {authz.body.identifier.value}")
        response, validation = http01.response_and_validation(account)
        answers[http01.chall.encode("token")] = validation
        to_answer.append((http01, response))
    publish(answers)
    for challenge, response in to_answer:
        acme.answer_challenge(challenge, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_DEADLINE)
    done = acme.poll_and_finalize(order, deadline=deadline)
    chain = done.fullchain_pem.encode() if isinstance(done.fullchain_pem, str) else done.fullchain_pem
    return chain.rstrip(b"\n") + b"\n" + cert_key
