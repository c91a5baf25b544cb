"""A server that starts sealed, over HTTP on SQLite and PostgreSQL: it refuses what needs a key
with 503 ``vault_sealed`` and writes nothing; custodians unseal it through the API, one share at
a time, without a restart; wrong shares and missing credentials are refused; a custodian seals
it again and a second quorum unseals it again.

Each server is built from the tests' settings without the development vault file, so it starts
sealed; the test initializes the vault (5 shares, any 3 unseal) and makes custodians, as
``zeropay vault init`` and ``zeropay vault custodian-add`` would.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from conftest import Api
from support import sca
from support.mfa import Mfa, SmtpInbox
from zeropay.adapters.clock import FixedClock, SystemClock
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.sql import tables as t
from zeropay.adapters.vault.shares import Share
from zeropay.adapters.vault.store import MemoryVaultStore, SqlVaultStore, vault_engine
from zeropay.adapters.vault.vault import Vault
from zeropay.api.app import create_app
from zeropay.bootstrap import Container, build
from zeropay.config import Settings
from zeropay.services import audit, ledger_check, merchants

SHARES = 5
THRESHOLD = 3
CUSTODIANS = ("ana", "ben", "cy")
PASSWORD = "a long passphrase"
# Not compared: the vault's own mailboxes, which its background sync writes every second whatever
# the requests, and the DPoP proofs seen, each spent when it arrives whatever the answer
# (RFC 9449 §11.1: a proof is accepted once).
NOT_COMPARED = frozenset({"vault_peers", "vault_share_drops", "vault_transfers", "dpop_proofs"})


@dataclass
class Sealed:
    """A server that started sealed, the shares ``vault init`` handed out and each custodian's
    credential."""

    client: TestClient
    container: Container
    shares: list[Share]
    tokens: dict[str, str]

    @property
    def vault(self) -> Vault:
        assert self.container.vault is not None
        return self.container.vault

    def submit(self, share: str, custodian: str = "ana") -> Any:
        return self.client.post(
            "/v1/vault/unseal",
            json={"share": share},
            headers={"Authorization": f"Bearer {self.tokens[custodian]}"},
        )

    def unseal(self, *indexes: int) -> list[dict[str, Any]]:
        """Submit the shares with these indexes, each by the next custodian; the answers."""
        answers = []
        for custodian, index in zip(CUSTODIANS, indexes, strict=False):
            r = self.submit(self.shares[index - 1].text(), custodian)
            assert r.status_code == 200, r.text
            answers.append(r.json())
        return answers

    def seal(self, custodian: str = "ana") -> Any:
        return self.client.post(
            "/v1/vault/seal", headers={"Authorization": f"Bearer {self.tokens[custodian]}"}
        )

    def status(self) -> dict[str, Any]:
        r = self.client.get("/v1/vault/status")
        assert r.status_code == 200, r.text
        return dict(r.json())


def _sealed(configured: Settings, clock: FixedClock) -> Iterator[Sealed]:
    built = build(
        replace(configured, vault_dev_file=None),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    assert built.vault is not None and built.vault.sealed
    shares = built.vault.initialize(shares=SHARES, threshold=THRESHOLD)
    tokens = {name: built.vault.add_custodian(name) for name in CUSTODIANS}
    with TestClient(create_app(built), base_url="http://localhost") as client:
        yield Sealed(client, built, shares, tokens)
    built.engine.dispose()


@pytest.fixture
def sealed(settings: Settings, clock: FixedClock) -> Iterator[Sealed]:
    """The tests' password-only policy and payments core, started sealed."""
    yield from _sealed(settings, clock)


@pytest.fixture
def sealed_sca(
    mfa_settings: Settings, clock: FixedClock, smtp_inbox: SmtpInbox
) -> Iterator[tuple[Sealed, Mfa]]:
    """The shipped default policy with the shipped ``psd2`` SCA exemptions, started sealed."""
    for server in _sealed(replace(mfa_settings, sca_profile="psd2"), clock):
        yield server, Mfa(server.client, server.container, smtp_inbox)


def snapshot(engine: Engine, *, leave_out: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Every row of every compared table, in a comparable form; ``leave_out`` names one column
    per table not to compare."""
    out = {}
    with engine.connect() as c:
        for table in t.metadata.sorted_tables:
            if table.name in NOT_COMPARED:
                continue
            skipped = (leave_out or {}).get(table.name)
            columns = [column for column in table.c if column.name != skipped]
            rows = c.execute(select(*columns))
            out[table.name] = sorted(repr(tuple(row)) for row in rows)
    return out


def changed_tables(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def sealed_answer(r: Any) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "vault_sealed"


def sign_up(client: TestClient, email: str) -> Any:
    return client.post("/v1/users", json={"email": email, "password": PASSWORD})


def log_in(client: TestClient, email: str) -> Any:
    return client.post("/v1/sessions", json={"email": email, "password": PASSWORD})


# ---- sealed -------------------------------------------------------------------------------------


def test_a_sealed_server_refuses_sign_up_and_login_with_503_and_writes_nothing(
    sealed: Sealed,
) -> None:
    before = snapshot(sealed.container.engine)
    sealed_answer(sign_up(sealed.client, "early@example.com"))
    sealed_answer(log_in(sealed.client, "early@example.com"))
    with pytest.raises(Exception) as refused:
        merchants.create_merchant(sealed.container.ctx, name="Corner Cafe")
    assert getattr(refused.value, "code", None) == "vault_sealed"
    after = snapshot(sealed.container.engine)
    assert changed_tables(before, after) == []
    assert after["users"] == after["sessions"] == after["audit_log"] == []
    assert after["ledger_transfers"] == after["merchants"] == []


def test_status_says_sealed_with_the_threshold_and_no_share_received(sealed: Sealed) -> None:
    assert sealed.status() == {
        "initialized": True,
        "sealed": True,
        "development": False,
        "threshold": THRESHOLD,
        "shares": SHARES,
        "shares_received": 0,
        "key_version": 1,
    }


def test_one_and_two_shares_keep_it_sealed_and_the_third_unseals_without_a_restart(
    sealed: Sealed,
) -> None:
    for received, index in enumerate((4, 2), start=1):
        r = sealed.submit(sealed.shares[index - 1].text(), CUSTODIANS[received - 1])
        assert r.status_code == 200, r.text
        assert r.json() == {
            "sealed": True,
            "shares_received": received,
            "threshold": THRESHOLD,
            "processes": 1,
        }
        status = sealed.status()
        assert status["sealed"] is True and status["shares_received"] == received
        sealed_answer(sign_up(sealed.client, "patient@example.com"))
    r = sealed.submit(sealed.shares[4].text(), "cy")
    assert r.status_code == 200, r.text
    assert r.json()["sealed"] is False
    assert sealed.status()["sealed"] is False
    # The same requests, on the same app and process, now go through: nothing of the refused
    # sign-ups was left behind (the address is free).
    assert sign_up(sealed.client, "patient@example.com").status_code == 201
    r = log_in(sealed.client, "patient@example.com")
    assert r.status_code == 201, r.text
    payer = {"Authorization": f"Bearer {r.json()['token']}"}
    api = Api(sealed.client, sealed.container)
    merchant = api.merchant()
    r = sealed.client.post(
        "/v1/wallet/topups", headers=payer, json={"amount": 1000, "currency": "USD"}
    )
    assert r.status_code == 201, r.text
    paid = sealed.client.post(f"/v1/checkout/{api.payment(merchant)['id']}/confirm", headers=payer)
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    assert sealed.client.get("/v1/me", headers=payer).json()["email"] == "patient@example.com"


def test_the_unseal_is_audited_under_the_custodian_who_completed_it(sealed: Sealed) -> None:
    sealed.unseal(1, 2, 3)
    with sealed.container.engine.connect() as c:
        rows = c.execute(text("SELECT event, actor FROM audit_log ORDER BY seq")).all()
    assert [tuple(r) for r in rows] == [("vault.unsealed", "custodian:cy")]
    assert audit.verify(sealed.container.ctx).breaks == []


def _share_forms(share: Share) -> list[bytes]:
    """A share as it could sit in a column: its value (whole, halves, hex, base64) or its text."""
    value = share.value
    return [
        value,
        value[:16],
        value[16:],
        value.hex().encode(),
        base64.urlsafe_b64encode(value).rstrip(b"="),
        base64.b64encode(value).rstrip(b"="),
        share.text().encode(),
    ]


def _every_value(engine: Engine) -> list[bytes]:
    """Every value of every row of every table, the vault's mailboxes included, as bytes."""
    out = []
    with engine.connect() as c:
        for table in t.metadata.sorted_tables:
            for row in c.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        out.append(bytes(value))
                    elif value is not None:
                        out.append(str(value).encode())
    return out


def test_a_share_waiting_for_the_quorum_in_a_single_process_is_nowhere_in_the_database(
    sealed: Sealed,
) -> None:
    """Without a peer secret the process that receives a share keeps it in its memory: a
    database writer who put their own key in its peer row would have been sent it otherwise."""
    sealed.unseal(1, 2)
    assert sealed.status()["shares_received"] == 2
    with sealed.container.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM vault_share_drops")).scalar_one() == 0
    stored = _every_value(sealed.container.engine)
    assert stored  # the scan sees rows (the vault's shape, its keys, custodians, peers)
    for share in sealed.shares[:2]:
        for form in _share_forms(share):
            assert not any(form in value for value in stored), (share.index, form)
    assert sealed.submit(sealed.shares[2].text(), "cy").json()["sealed"] is False


PEER_SECRET = "the servers' peer secret: 32 characters or more"


@pytest.fixture
def sealed_with_a_peer(settings: Settings, clock: FixedClock) -> Iterator[tuple[Sealed, Vault]]:
    """A server with the peer secret, and a second sealed process on its database (another
    worker, as ``bootstrap.build_vault`` makes it) that has announced itself."""
    for server in _sealed(replace(settings, vault_peer_secret=PEER_SECRET), clock):
        other = Vault(
            SqlVaultStore(vault_engine(server.container.engine)),
            clock=SystemClock(),
            peer_secret=PEER_SECRET.encode(),
        )
        other.sync()
        yield server, other
        other.stop()


def test_a_share_waiting_for_the_quorum_is_in_the_database_only_sealed_and_is_gone_after(
    sealed_with_a_peer: tuple[Sealed, Vault],
) -> None:
    """With a peer secret a share reaches the other sealed processes through the database:
    sealed to each one's key, MAC'd under the secret with the seal epoch, never to the process
    that received it (which keeps it in memory)."""
    sealed, other = sealed_with_a_peer
    answers = sealed.unseal(1, 2)
    assert [(a["sealed"], a["processes"]) for a in answers] == [(True, 2), (True, 2)]
    with sealed.container.engine.connect() as c:
        waiting = c.execute(
            text(
                "SELECT peer_id, share_index, sealed_share, submitted_by, seal_epoch, mac "
                "FROM vault_share_drops"
            )
        ).all()
    assert sorted((w.peer_id, w.share_index) for w in waiting) == [
        (other.peer_id, 1),
        (other.peer_id, 2),
    ]
    assert {w.seal_epoch for w in waiting} == {0}
    macs = {bytes(w.mac) for w in waiting}
    assert len(macs) == 2 and {len(m) for m in macs} == {32} and bytes(32) not in macs
    # The other process counts them: each is authenticated under the secret it holds.
    assert other.status().received == 2
    stored = _every_value(sealed.container.engine)
    for share in sealed.shares[:2]:
        for form in _share_forms(share):
            assert not any(form in value for value in stored), (share.index, form)

    r = sealed.submit(sealed.shares[2].text(), "cy")
    assert r.json()["sealed"] is False
    other.sync()
    assert not other.sealed
    with sealed.container.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM vault_share_drops")).scalar_one() == 0


# ---- refused shares -----------------------------------------------------------------------------


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).digest()[:4].hex()


def _forged(share: Share, *, value: bytes | None = None, index: int | None = None) -> str:
    """A share's text with another value or index and a checksum that matches it: what a
    careful forger, not a typo, would send."""
    encoded = base64.urlsafe_b64encode(value or share.value).rstrip(b"=").decode()
    body = f"zeropay-share-v1:{share.vault_id}:{index or share.index}:{encoded}"
    return f"{body}:{_checksum(body)}"


def _typo(text_: str) -> str:
    i = text_.rindex(":") - 5  # inside the value
    return text_[:i] + ("A" if text_[i] != "A" else "B") + text_[i + 1 :]


def _foreign(share: Share) -> Share:
    """The share with the same index of another vault."""
    other = Vault(MemoryVaultStore(), clock=FixedClock(datetime(2026, 11, 2, tzinfo=UTC)))
    return other.initialize(shares=SHARES, threshold=THRESHOLD)[share.index - 1]


REFUSALS = {
    "malformed": lambda s: "my share is the one with the blue cover",
    "checksum": lambda s: _typo(s.text()),
    "corrupt": lambda s: _forged(s, value=bytes([s.value[0] ^ 1]) + s.value[1:]),
    # An index no custodian was given (6 of 5).
    "corrupt_index": lambda s: _forged(s, index=SHARES + 1),
    "wrong_vault": lambda s: _foreign(s).text(),
    # Another vault's share relabelled with this vault's id: its value is not the one issued.
    "relabelled": lambda s: _forged(s, value=_foreign(s).value),
    "duplicate": lambda s: s.text(),
}
REASON = {"corrupt_index": "corrupt", "relabelled": "corrupt"}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_wrong_share_is_refused_with_its_reason_and_counts_for_nothing(
    sealed: Sealed, kind: str
) -> None:
    first, second = sealed.shares[0], sealed.shares[1]
    assert sealed.submit(first.text(), "ana").status_code == 200
    bad = REFUSALS[kind](first if kind == "duplicate" else second)
    r = sealed.submit(bad, "ben")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "share_refused"
    assert r.json()["reason"] == REASON.get(kind, kind)
    status = sealed.status()
    assert status["sealed"] is True and status["shares_received"] == 1
    # Two good shares more unseal it: the refused one took no place in the quorum.
    assert sealed.submit(second.text(), "ben").json()["shares_received"] == 2
    assert sealed.submit(sealed.shares[2].text(), "cy").json()["sealed"] is False


# ---- credentials --------------------------------------------------------------------------------

BAD_CREDENTIALS = {
    "none": {},
    "empty bearer": {"Authorization": "Bearer "},
    "basic": {"Authorization": "Basic YW5hOmFuYQ=="},
    "unknown": {"Authorization": "Bearer zpc_" + "A" * 43},
    "not a custodian token": {"Authorization": "Bearer zps_" + "A" * 43},
}


@pytest.mark.parametrize("credential", sorted(BAD_CREDENTIALS))
def test_a_share_without_a_custodian_credential_is_refused_401_and_not_counted(
    sealed: Sealed, credential: str
) -> None:
    r = sealed.client.post(
        "/v1/vault/unseal",
        json={"share": sealed.shares[0].text()},
        headers=BAD_CREDENTIALS[credential],
    )
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "not_authenticated"
    assert sealed.status()["shares_received"] == 0
    # Had it counted, these two would unseal.
    assert [a["sealed"] for a in sealed.unseal(2, 3)] == [True, True]


def test_without_a_credential_no_share_is_judged_so_guesses_learn_nothing(sealed: Sealed) -> None:
    """Were a share checked before the credential, the reasons would be an oracle: ``corrupt``
    against ``duplicate`` tells a caller which guess is a real share."""
    real, second = sealed.shares[0], sealed.shares[1]
    assert sealed.submit(real.text(), "ana").status_code == 200
    guesses = [make(real if kind == "duplicate" else second) for kind, make in REFUSALS.items()]
    for guess in [*guesses, second.text()]:
        r = sealed.client.post("/v1/vault/unseal", json={"share": guess})
        assert r.status_code == 401, r.text
        assert "reason" not in r.json() or r.json()["reason"] == "custodian"
    assert sealed.status()["shares_received"] == 1


def test_another_custodians_credential_hashed_in_the_database_does_not_authenticate(
    sealed: Sealed,
) -> None:
    with sealed.container.engine.connect() as c:
        stored = c.execute(text("SELECT token_hash FROM vault_custodians")).scalars().all()
    for token_hash in stored:
        for sent in (bytes(token_hash).hex(), base64.urlsafe_b64encode(bytes(token_hash)).decode()):
            r = sealed.client.post(
                "/v1/vault/unseal",
                json={"share": sealed.shares[0].text()},
                headers={"Authorization": f"Bearer {sent}"},
            )
            assert r.status_code == 401, r.text
    assert sealed.status()["shares_received"] == 0


@pytest.mark.parametrize("credential", sorted(BAD_CREDENTIALS))
def test_seal_without_a_custodian_credential_is_refused_401_and_the_server_keeps_serving(
    sealed: Sealed, credential: str
) -> None:
    sealed.unseal(1, 2, 3)
    r = sealed.client.post("/v1/vault/seal", headers=BAD_CREDENTIALS[credential])
    assert r.status_code == 401, r.text
    assert sealed.status()["sealed"] is False
    assert sign_up(sealed.client, "still.served@example.com").status_code == 201


# ---- seal and unseal again ----------------------------------------------------------------------


def test_seal_through_the_api_refuses_again_and_a_second_quorum_unseals_again(
    sealed: Sealed,
) -> None:
    sealed.unseal(1, 2, 3)
    assert sign_up(sealed.client, "before@example.com").status_code == 201
    r = sealed.seal("ben")
    assert r.status_code == 200, r.text
    assert r.json()["sealed"] is True and sealed.status()["sealed"] is True
    before = snapshot(sealed.container.engine)
    sealed_answer(sign_up(sealed.client, "between@example.com"))
    sealed_answer(log_in(sealed.client, "before@example.com"))
    assert changed_tables(before, snapshot(sealed.container.engine)) == []
    # The first quorum's shares were not kept: one share does not unseal again.
    assert sealed.unseal(1)[0] == {
        "sealed": True,
        "shares_received": 1,
        "threshold": THRESHOLD,
        "processes": 1,
    }
    assert sealed.submit(sealed.shares[3].text(), "ben").json()["sealed"] is True
    assert sealed.submit(sealed.shares[4].text(), "cy").json()["sealed"] is False
    assert log_in(sealed.client, "before@example.com").status_code == 201
    assert sign_up(sealed.client, "between@example.com").status_code == 201
    with sealed.container.engine.connect() as c:
        actions = c.execute(text("SELECT event, actor FROM audit_log ORDER BY seq")).all()
    vault_actions = [tuple(a) for a in actions if a.event.startswith("vault.")]
    assert vault_actions == [
        ("vault.unsealed", "custodian:cy"),
        ("vault.sealed", "custodian:ben"),
        ("vault.unsealed", "custodian:cy"),
    ]
    assert audit.verify(sealed.container.ctx).breaks == []


def test_a_payment_that_asks_for_sca_is_refused_while_sealed_and_completes_after_unseal(
    sealed_sca: tuple[Sealed, Mfa], clock: FixedClock
) -> None:
    """Under the shipped policy and psd2 exemptions a payment above EUR 30 asks for SCA. Sealed,
    its confirmation and the answer to a running flow are refused and change nothing: no hold,
    no flow, no failed attempt. The one thing spent is the passkey challenge, consumed before
    any answer is checked (services/factor_checks.py); the payer answers a new ceremony."""
    server, mfa = sealed_sca
    server.unseal(1, 2, 3)
    email = "sca.payer@example.com"
    phone = sca.payer(mfa, email, EUR=20000)
    sca.season(mfa, clock, (phone, email))
    shop = sca.shop(mfa, "Sealed Shop")
    waiting = sca.bill(mfa, shop, 4000, "EUR")
    running = sca.flow_of(sca.confirm(phone, sca.bill(mfa, shop, 4500, "EUR")))
    made = sca.assertion(phone, sca.options(phone, running["id"]))
    assert sca.wallet(phone, "EUR") == (15500, 4500)

    assert server.seal("ana").status_code == 200
    spent = {"auth_flows": "challenge"}
    before = snapshot(server.container.engine, leave_out=spent)
    sealed_answer(sca.confirm(phone, waiting))
    sealed_answer(sca.passkey(mfa, phone, running["id"], made))
    assert sca.wallet(phone, "EUR") == (15500, 4500)  # reading a balance needs no key
    assert changed_tables(before, snapshot(server.container.engine, leave_out=spent)) == []

    server.unseal(3, 4, 5)
    refused = sca.passkey(mfa, phone, running["id"], made)
    assert refused.status_code == 401, refused.text  # its challenge was spent: no replay
    for r in (
        sca.answer_with_passkey(mfa, phone, running),
        sca.answer_with_passkey(mfa, phone, sca.flow_of(sca.confirm(phone, waiting))),
    ):
        assert r.status_code == 200, r.text
        assert r.json()["flow"]["status"] == "complete"
        assert r.json()["payment"]["status"] == "succeeded"
    assert sca.wallet(phone, "EUR") == (20000 - 4000 - 4500, 0)
    _, _, violations = ledger_check.verify(mfa.container.ctx)
    assert violations == []
