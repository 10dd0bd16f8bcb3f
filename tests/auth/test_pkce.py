from __future__ import annotations

import pytest

from xrouter.auth.pkce import (
    PkceError,
    check_challenge,
    check_verifier,
    s256_challenge,
    verifier_matches,
)

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc_7636_appendix_b_vector() -> None:
    assert s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE
    assert verifier_matches(RFC_VERIFIER, RFC_CHALLENGE, "S256")
    check_challenge(RFC_CHALLENGE, "S256")
    assert check_verifier(RFC_VERIFIER) == RFC_VERIFIER


def test_a_different_verifier_does_not_match() -> None:
    other = RFC_VERIFIER[:-1] + ("A" if RFC_VERIFIER[-1] != "A" else "B")
    assert not verifier_matches(other, RFC_CHALLENGE, "S256")
    assert not verifier_matches(RFC_CHALLENGE, RFC_CHALLENGE, "plain")


@pytest.mark.parametrize(
    ("challenge", "method", "reason"),
    [
        (None, "S256", "required"),
        (RFC_CHALLENGE, None, "missing method means plain"),
        (RFC_CHALLENGE, "", "missing method means plain"),
        (RFC_CHALLENGE, "plain", "not supported"),
        (RFC_CHALLENGE, "s256", "not supported"),
        (RFC_CHALLENGE[:-1], "S256", "43 base64url"),
        (RFC_CHALLENGE + "=", "S256", "43 base64url"),
        (RFC_CHALLENGE[:-1] + "+", "S256", "43 base64url"),
    ],
)
def test_bad_challenges_are_refused(challenge: str | None, method: str | None, reason: str) -> None:
    with pytest.raises(PkceError, match=reason.split()[0]):
        check_challenge(challenge, method)


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        "a" * 42,
        "a" * 129,
        "a" * 42 + " ",
        "a" * 42 + "+",
        "a" * 42 + "/",
        "a" * 42 + "=",
        "a" * 42 + "é",
    ],
)
def test_verifiers_out_of_rfc_7636_are_refused(verifier: str | None) -> None:
    with pytest.raises(PkceError):
        check_verifier(verifier)


@pytest.mark.parametrize("verifier", ["a" * 43, "Z" * 128, "-._~" * 11])
def test_verifiers_at_the_limits_are_accepted(verifier: str) -> None:
    assert check_verifier(verifier) == verifier
