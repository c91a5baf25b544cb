"""`zeropay policy check FILE` validates a policy file before it is deployed."""

from __future__ import annotations

from pathlib import Path

from zeropay.cli import main

SHIPPED = Path(__file__).parents[2] / "src" / "zeropay" / "policies" / "default.toml"


def test_the_shipped_policy_checks_valid_and_lists_each_access_point(capsys):
    assert main(["policy", "check", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "login                  passkey | password + totp" in out


def test_a_weak_step_up_path_is_refused_with_the_key_named(tmp_path, capsys):
    text = SHIPPED.read_text().replace(
        'paths = [["passkey"], ["password", "totp"], ["password", "email_otp"], ["device_key", "pin"]]',
        'paths = [["password"]]',
    )
    assert 'paths = [["password"]]' in text
    bad = tmp_path / "weak.toml"
    bad.write_text(text)
    assert main(["policy", "check", str(bad)]) == 2
    assert "points.step_up.paths[0]" in capsys.readouterr().err


def test_a_file_that_is_not_toml_is_refused(tmp_path, capsys):
    bad = tmp_path / "broken.toml"
    bad.write_text("version = ")
    assert main(["policy", "check", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err


def _proof(capsys, *args: str) -> str:
    assert main(["dpop", *args]) == 0
    return capsys.readouterr().out.strip()


def test_the_dpop_helper_signs_verifiable_proofs_with_one_kept_key(tmp_path, capsys):
    import jwt

    from zeropay.domain.dpop import access_token_hash, jwk_thumbprint

    key = str(tmp_path / "device.pem")
    url = "http://localhost:8000/v1/me?x=1"
    first = _proof(capsys, "get", url, "--token", "tok", "--key", key)
    second = _proof(capsys, "POST", "http://localhost:8000/v1/sessions", "--key", key)
    header = jwt.get_unverified_header(first)
    claims = jwt.decode(first, jwt.PyJWK(header["jwk"]).key, algorithms=["ES256"])
    assert header["typ"] == "dpop+jwt" and "d" not in header["jwk"]
    assert (claims["htm"], claims["htu"]) == ("GET", "http://localhost:8000/v1/me")
    assert claims["ath"] == access_token_hash("tok")
    other = jwt.get_unverified_header(second)
    assert jwk_thumbprint(other["jwk"]) == jwk_thumbprint(header["jwk"])  # the same device key
    assert "ath" not in jwt.decode(second, options={"verify_signature": False})
