"""DPoP proof claims (RFC 9449 §4.3) and JWK thumbprints (RFC 7638), against published vectors."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zeropay.domain.dpop import (
    DPoPClaims,
    access_token_hash,
    htu_of,
    jwk_thumbprint,
    verify_dpop_claims,
)
from zeropay.domain.errors import InvalidInput, NotAuthenticated, ProofInvalid

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RFC7638 = json.loads((VECTORS / "rfc7638_thumbprint.json").read_text())
RFC9449 = json.loads((VECTORS / "rfc9449_dpop.json").read_text())
RFC8037 = json.loads((VECTORS / "rfc8037_okp_thumbprint.json").read_text())

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WINDOW_S = 60
URL = "https://api.zeropay.example/v1/payments"
TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
KEY = RFC9449["jwk"]
JKT = RFC9449["jkt"]

PROOF = DPoPClaims(
    jkt=JKT,
    jti="e1j3V_bKic8-LAEB",  # 16 characters, the RFC 9449 §7.1 example's
    htm="POST",
    htu=URL,
    iat=NOW,
    ath=access_token_hash(TOKEN),
)


def verify(claims: DPoPClaims = PROOF, **expected: object) -> DPoPClaims:
    arguments: dict[str, object] = {
        "expected_method": "POST",
        "expected_urls": [URL],
        "expected_jkt": JKT,
        "expected_ath": access_token_hash(TOKEN),
        "now": NOW,
        "window_s": WINDOW_S,
    }
    arguments.update(expected)
    return verify_dpop_claims(claims, **arguments)  # type: ignore[arg-type]


def reason_for(claims: DPoPClaims, **expected: object) -> str:
    with pytest.raises(ProofInvalid) as caught:
        verify(claims, **expected)
    return str(caught.value.details["reason"])


# ---- verify_dpop_claims ------------------------------------------------------------------------


def test_a_proof_matching_every_expectation_is_returned():
    assert verify() == PROOF


def test_a_refused_proof_is_a_failed_authentication():
    assert issubclass(ProofInvalid, NotAuthenticated)


@pytest.mark.parametrize("jti", ["", "a", "e1j3V_bKic8-LAE", "x" * 129])
def test_a_jti_shorter_than_16_or_longer_than_128_characters_is_refused(jti):
    assert reason_for(replace(PROOF, jti=jti)) == "jti"


@pytest.mark.parametrize("jti", ["x" * 16, "x" * 128])
def test_a_jti_of_16_to_128_characters_is_accepted(jti):
    verify(replace(PROOF, jti=jti))


@pytest.mark.parametrize("htm", ["GET", "PUT", "post"])
def test_a_proof_for_another_method_is_refused(htm):
    assert reason_for(replace(PROOF, htm=htm)) == "htm"


def test_the_expected_method_may_be_given_in_lower_case():
    verify(expected_method="post")


@pytest.mark.parametrize(
    "htu",
    [
        "https://api.zeropay.example/v1/payments/1",
        "https://api.zeropay.example/v1/refunds",
        "https://evil.example/v1/payments",
        "http://api.zeropay.example/v1/payments",
        "https://api.zeropay.example:8443/v1/payments",
        "https://api.zeropay.example/V1/payments",  # the path is case-sensitive
    ],
)
def test_a_proof_for_another_url_is_refused(htu):
    assert reason_for(replace(PROOF, htu=htu)) == "htu"


@pytest.mark.parametrize(
    "htu",
    [
        URL + "?amount_minor=100",
        URL + "#fragment",
        "https://API.ZeroPay.Example/v1/payments",
        "HTTPS://api.zeropay.example/v1/payments?x=1#y",
    ],
)
def test_query_fragment_and_host_case_do_not_matter_to_the_url(htu):
    verify(replace(PROOF, htu=htu))


def test_the_query_of_the_request_url_does_not_matter_either():
    verify(expected_urls=[URL + "?page=2"])


def test_any_one_of_the_servers_origins_is_accepted_and_no_other():
    other = "https://pay.zeropay.example/v1/payments"
    verify(expected_urls=[other, URL])
    assert reason_for(PROOF, expected_urls=[other]) == "htu"
    assert reason_for(PROOF, expected_urls=[]) == "htu"


def test_htu_of_keeps_scheme_host_and_path_only():
    assert htu_of("HTTPS://Api.Example/a/B?q=1#f") == "https://api.example/a/B"
    assert htu_of("https://api.example") == "https://api.example/"


@pytest.mark.parametrize(
    "offset_s", [-WINDOW_S, 0, WINDOW_S], ids=["window-old", "now", "window-ahead"]
)
def test_a_proof_issued_within_the_window_is_accepted_up_to_its_edges(offset_s):
    verify(replace(PROOF, iat=NOW + timedelta(seconds=offset_s)))


@pytest.mark.parametrize(
    "offset_s",
    [-WINDOW_S - 1, WINDOW_S + 1, -3600, 86400],
    ids=["1s-too-old", "1s-too-far-ahead", "an-hour-old", "a-day-ahead"],
)
def test_a_proof_issued_outside_the_window_is_refused(offset_s):
    assert reason_for(replace(PROOF, iat=NOW + timedelta(seconds=offset_s))) == "iat"


@pytest.mark.parametrize("ath", [access_token_hash("another-token"), None, ""])
def test_a_proof_for_another_access_token_is_refused(ath):
    assert reason_for(replace(PROOF, ath=ath)) == "ath"


def test_a_proof_without_an_access_token_is_accepted_where_none_is_expected():
    verify(replace(PROOF, ath=None), expected_ath=None)


def test_a_proof_signed_by_another_key_is_refused():
    other = jwk_thumbprint({**KEY, "x": KEY["y"], "y": KEY["x"]})
    assert reason_for(replace(PROOF, jkt=other)) == "jkt"


def test_a_proof_is_accepted_from_any_key_where_none_is_bound_yet():
    verify(replace(PROOF, jkt="some-other-thumbprint"), expected_jkt=None)


def test_the_checks_run_in_the_order_of_rfc_9449_section_4_3():
    everything_wrong = DPoPClaims(
        jkt="other", jti="short", htm="GET", htu="https://evil.example/", iat=NOW, ath="other"
    )
    assert reason_for(everything_wrong) == "jti"
    assert reason_for(replace(everything_wrong, jti="x" * 16)) == "htm"
    assert reason_for(replace(everything_wrong, jti="x" * 16, htm="POST")) == "htu"


# ---- access_token_hash -------------------------------------------------------------------------


def test_the_access_token_hash_matches_the_rfc_9449_example():
    assert access_token_hash(RFC9449["access_token"]) == RFC9449["ath"]


# ---- jwk_thumbprint ----------------------------------------------------------------------------


def b64url_sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def canonical_by_hand(jwk: dict[str, str], members: tuple[str, ...]) -> str:
    """RFC 7638 §3.2, written out: the required members (given here in lexicographic order),
    no whitespace; the values are base64url or names, so they need no escaping."""
    return "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in members) + "}"


def test_the_rfc_7638_canonical_json_hashes_to_the_published_thumbprint():
    # Checks the vector file itself, without our code: the canonical JSON of RFC 7638 §3.1
    # (required members, lexicographic order, no whitespace) hashes to the printed thumbprint.
    jwk = RFC7638["jwk"]
    canonical = canonical_by_hand(jwk, ("e", "kty", "n"))
    assert canonical == RFC7638["canonical_json"]
    assert b64url_sha256(canonical) == RFC7638["thumbprint"]


def test_the_rfc_7638_rsa_key_has_the_published_thumbprint():
    assert jwk_thumbprint(RFC7638["jwk"]) == RFC7638["thumbprint"]


def test_the_rfc_9449_ec_key_has_the_published_thumbprint():
    canonical = canonical_by_hand(KEY, ("crv", "kty", "x", "y"))
    assert b64url_sha256(canonical) == RFC9449["jkt"]
    assert jwk_thumbprint(KEY) == RFC9449["jkt"]


def test_the_rfc_8037_ed25519_key_has_the_published_thumbprint():
    jwk = RFC8037["jwk"]
    canonical = canonical_by_hand(jwk, ("crv", "kty", "x"))
    assert canonical == RFC8037["canonical_json"]
    assert b64url_sha256(canonical) == RFC8037["thumbprint"]
    assert jwk_thumbprint(jwk) == RFC8037["thumbprint"]


def test_members_that_are_not_required_do_not_change_the_thumbprint():
    decorated = {"use": "sig", "kid": "device-1", "alg": "ES256", "key_ops": ["verify"], **KEY}
    assert jwk_thumbprint(decorated) == RFC9449["jkt"]
    reordered = dict(reversed(list(KEY.items())))
    assert jwk_thumbprint(reordered) == RFC9449["jkt"]


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_a_key_carrying_a_private_member_is_refused(member):
    with pytest.raises(InvalidInput) as caught:
        jwk_thumbprint({**KEY, member: "AAAA"})
    assert caught.value.details["reason"] == "private"


def test_an_rsa_private_key_is_refused():
    with pytest.raises(InvalidInput) as caught:
        jwk_thumbprint({**RFC7638["jwk"], "d": "X4cTteJY_gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoVH"})
    assert caught.value.details["reason"] == "private"


@pytest.mark.parametrize("kty", ["oct", "ec", "", None, 1])
def test_an_unknown_key_type_is_refused(kty):
    with pytest.raises(InvalidInput) as caught:
        jwk_thumbprint({**KEY, "kty": kty})
    assert caught.value.details["reason"] == "kty"


def test_a_key_without_its_key_type_is_refused():
    without = {k: v for k, v in KEY.items() if k != "kty"}
    with pytest.raises(InvalidInput) as caught:
        jwk_thumbprint(without)
    assert caught.value.details["reason"] == "kty"


@pytest.mark.parametrize("member", ["crv", "x", "y"])
def test_an_ec_key_missing_a_required_member_is_refused(member):
    with pytest.raises(InvalidInput) as caught:
        jwk_thumbprint({k: v for k, v in KEY.items() if k != member})
    assert caught.value.details["reason"] == "members"


def test_an_ec_key_with_a_non_string_coordinate_is_refused():
    with pytest.raises(InvalidInput) as caught:
        jwk_thumbprint({**KEY, "x": 12345})
    assert caught.value.details["reason"] == "members"
