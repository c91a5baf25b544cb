"""Password policy (NIST SP 800-63B), argon2id hashing, and the shipped common-password list."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeropay.adapters.passwords import Argon2PasswordHasher, shipped_common_passwords
from zeropay.domain.errors import AuthenticationFailed, WeakPassword
from zeropay.domain.passwords import (
    PASSWORD_LENGTH_MAX,
    PASSWORD_LENGTH_MIN,
    PASSWORD_LENGTH_RAW_MAX,
    check_password_policy,
    load_common_passwords,
)

COMMON = load_common_passwords(["# a comment", "", "  Password1  ", "letmein123"])


def reason_for(password: object, email: str | None = None) -> str:
    with pytest.raises(WeakPassword) as caught:
        check_password_policy(password, common=COMMON, email=email)
    return str(caught.value.details["reason"])


# Policy


def test_a_long_uncommon_password_is_accepted_unchanged() -> None:
    assert check_password_policy("correct horse battery", common=COMMON) == "correct horse battery"


def test_no_composition_rules_apply_so_lowercase_letters_alone_pass() -> None:
    assert check_password_policy("abcdefghqz", common=COMMON) == "abcdefghqz"


@pytest.mark.parametrize("password", [None, 12345678, b"bytes-password", ["a" * 10]])
def test_a_password_that_is_not_a_string_is_refused(password: object) -> None:
    assert reason_for(password) == "not_a_string"


def test_a_password_with_a_lone_surrogate_is_refused_because_it_cannot_be_hashed() -> None:
    assert reason_for("abcdefgh\ud800") == "not_a_string"


def test_the_minimum_length_is_allowed_and_one_less_is_too_short() -> None:
    assert check_password_policy("x" * PASSWORD_LENGTH_MIN, common=COMMON)
    assert reason_for("x" * (PASSWORD_LENGTH_MIN - 1)) == "too_short"


def test_the_maximum_length_is_allowed_and_one_more_is_too_long() -> None:
    assert check_password_policy("x" * PASSWORD_LENGTH_MAX, common=COMMON)
    assert reason_for("x" * (PASSWORD_LENGTH_MAX + 1)) == "too_long"


def test_at_least_64_characters_are_allowed_as_nist_asks() -> None:
    assert PASSWORD_LENGTH_MAX >= 64
    assert check_password_policy("y" * 64, common=COMMON)


def test_length_counts_code_points_after_nfkc() -> None:
    # Seven letters each followed by a combining acute: 14 code points, 7 after NFKC composes them.
    assert reason_for("e\u0301" * 7) == "too_short"
    # U+FDFA expands to 18 code points under NFKC, so one of it is long enough.
    assert check_password_policy("\ufdfa", common=COMMON) == unicodedata.normalize("NFKC", "\ufdfa")
    # Eight multi-byte characters are eight code points, not 24 bytes.
    assert check_password_policy("\u4e2d" * 8, common=COMMON) == "\u4e2d" * 8


def test_the_password_is_returned_nfkc_normalised() -> None:
    assert check_password_policy("ｆｕｌｌｗｉｄｔｈ!", common=COMMON) == "fullwidth!"


def test_raw_input_beyond_the_raw_bound_is_too_long_without_normalising() -> None:
    assert reason_for("a" * (PASSWORD_LENGTH_RAW_MAX + 1)) == "too_long"


def test_raw_input_at_the_raw_bound_that_composes_to_fit_is_accepted() -> None:
    # U+1FAF written out as its four-code-point decomposition: 4 raw code points, 1 after NFKC.
    decomposed = unicodedata.normalize("NFD", "\u1faf")
    assert len(decomposed) == 4
    password = decomposed * PASSWORD_LENGTH_MAX
    assert len(password) == PASSWORD_LENGTH_RAW_MAX
    assert len(check_password_policy(password, common=COMMON)) == PASSWORD_LENGTH_MAX


def test_no_code_point_decomposes_into_more_than_four_so_the_raw_bound_is_sound() -> None:
    longest = max(
        len(unicodedata.normalize("NFD", chr(c)))
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF
    )
    assert longest * PASSWORD_LENGTH_MAX <= PASSWORD_LENGTH_RAW_MAX


@pytest.mark.parametrize("password", ["password1", "PASSWORD1", "PassWord1", "LetMeIn123"])
def test_a_common_password_is_refused_whatever_its_case(password: str) -> None:
    assert reason_for(password) == "common"


def test_a_common_password_in_fullwidth_letters_is_still_common() -> None:
    assert reason_for("ｐａｓｓｗｏｒｄ１") == "common"


def test_a_password_containing_the_email_local_part_is_refused() -> None:
    assert reason_for("xxAdaLovelace99", email="adalovelace@example.com") == "contains_email"


def test_a_short_email_local_part_is_not_held_against_the_password() -> None:
    assert check_password_policy("bob-is-my-name", common=COMMON, email="bob@example.com")


def test_the_email_domain_alone_is_not_held_against_the_password() -> None:
    assert check_password_policy("example-rocks", common=COMMON, email="adalovelace@example.com")


def test_a_quoted_local_part_with_an_at_sign_is_checked_whole() -> None:
    assert reason_for('zz"ada@home"zz', email='"ada@home"@example.com') == "contains_email"


def test_an_email_without_an_at_sign_counts_whole_as_the_local_part() -> None:
    assert reason_for("my-adalovelace-pw", email="adalovelace") == "contains_email"


def test_the_policy_checks_run_in_order_length_before_commonness() -> None:
    assert reason_for("123456", email="123456@example.com") == "too_short"


def test_weak_password_carries_its_stable_code() -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_policy("short", common=COMMON)
    assert caught.value.code == "weak_password"


def test_load_common_passwords_drops_blanks_and_comments_and_lower_cases() -> None:
    assert load_common_passwords(["# header", "", "   ", " Dragon ", "MONKEY\n"]) == frozenset(
        {"dragon", "monkey"}
    )


# Shipped list


def test_the_shipped_list_holds_well_known_passwords_and_about_twenty_thousand() -> None:
    common = shipped_common_passwords()
    assert "password" in common
    assert "123456789" in common
    assert len(common) >= 19_000
    assert not any(entry.startswith("#") for entry in common)


def test_the_shipped_list_is_read_once() -> None:
    assert shipped_common_passwords() is shipped_common_passwords()


def test_the_policy_refuses_a_password_from_the_shipped_list() -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_policy("Password123", common=shipped_common_passwords())
    assert caught.value.details["reason"] == "common"


# Hashing


@pytest.fixture(scope="module")
def hasher() -> Argon2PasswordHasher:
    return Argon2PasswordHasher.cheap_for_tests()


def test_a_hash_verifies_with_its_password(hasher: Argon2PasswordHasher) -> None:
    encoded = hasher.hash("correct horse")
    assert encoded.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    hasher.verify(encoded, "correct horse")


def test_the_same_password_hashes_differently_each_time(hasher: Argon2PasswordHasher) -> None:
    assert hasher.hash("correct horse") != hasher.hash("correct horse")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=1024,t=1,p=1$garbage",
        "$2b$12$abcdefghijklmnopqrstuuJkKq1r8Zb0u7iN6p0lR0m6Q1F2j7M3a",
        "$argon2id$v=19$m=1024,t=1,p=1$é",
    ],
    ids=["empty", "text", "bad_argon2", "bcrypt", "non_ascii"],
)
def test_an_invalid_hash_fails_authentication_and_nothing_else(
    hasher: Argon2PasswordHasher, encoded: str
) -> None:
    with pytest.raises(AuthenticationFailed, match="^authentication failed$"):
        hasher.verify(encoded, "anything")


def test_a_wrong_password_fails_authentication(hasher: Argon2PasswordHasher) -> None:
    encoded = hasher.hash("correct horse")
    with pytest.raises(AuthenticationFailed, match="^authentication failed$"):
        hasher.verify(encoded, "correct horsE")


def test_a_password_that_cannot_be_encoded_fails_authentication(
    hasher: Argon2PasswordHasher,
) -> None:
    with pytest.raises(AuthenticationFailed):
        hasher.verify(hasher.hash("correct horse"), "correct horse\ud800")


HASH_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(max_size=60).map(lambda tail: "$argon2id$v=19$m=1024,t=1,p=1$" + tail),
    st.text(max_size=60).map(lambda tail: "$argon2id$" + tail),
)


@given(encoded=HASH_TEXT, secret=st.text(max_size=20))
def test_verify_raises_only_authentication_failed_for_any_hash_text(
    hasher: Argon2PasswordHasher, encoded: str, secret: str
) -> None:
    with pytest.raises(AuthenticationFailed):
        hasher.verify(encoded, secret)


def test_a_hash_with_other_parameters_needs_rehash(hasher: Argon2PasswordHasher) -> None:
    stronger = Argon2PasswordHasher(time_cost=2, memory_cost_kib=2048, parallelism=1)
    assert not hasher.needs_rehash(hasher.hash("pw"))
    assert hasher.needs_rehash(stronger.hash("pw"))
    stronger.verify(hasher.hash("pw"), "pw")  # old hashes still verify before the rehash


def test_an_unparseable_hash_needs_rehash(hasher: Argon2PasswordHasher) -> None:
    assert hasher.needs_rehash("not a hash")


@pytest.mark.parametrize("secret", ["anything", "", "\ud800"])
def test_burn_never_raises(hasher: Argon2PasswordHasher, secret: str) -> None:
    hasher.burn(secret)


def test_burn_runs_a_full_verification_with_the_same_cost_as_real_hashes(monkeypatch) -> None:
    # Unknown accounts must cost what known ones cost (no timing oracle). Rather than time it,
    # check that burn really runs argon2 over a hash made with this hasher's own parameters.
    hasher = Argon2PasswordHasher(time_cost=2, memory_cost_kib=16384, parallelism=1)
    real = hasher.hash("correct horse")
    verified: list[str] = []
    inner = hasher._argon2

    class Spy:
        def verify(self, encoded: str, secret: str) -> bool:
            verified.append(encoded)
            return inner.verify(encoded, secret)

    monkeypatch.setattr(hasher, "_argon2", Spy())
    hasher.burn("wrong")
    assert len(verified) == 1
    assert verified[0].split("$")[1:4] == real.split("$")[1:4]  # argon2id, v=19, m/t/p


def test_production_parameters_are_argon2id_64_mib_3_passes_1_lane() -> None:
    hasher = Argon2PasswordHasher.production()
    encoded = hasher.hash("correct horse")
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    hasher.verify(encoded, "correct horse")


def test_repr_shows_parameters_only() -> None:
    text = repr(Argon2PasswordHasher.cheap_for_tests())
    assert text == "Argon2PasswordHasher(t=1, m=1024, p=1)"
