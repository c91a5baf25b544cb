"""Security questions: chosen from a fixed list, answers normalised and hashed with argon2id,
never shown again. They are weak on their own (NIST 800-63B does not accept them; ASVS 2.5.2
forbids them alone for recovery), so the policy pairs them with a passkey and never uses them
alone."""

from __future__ import annotations

import unicodedata

from zeropay.domain import bounds
from zeropay.domain.errors import AuthenticationFailed, InvalidInput
from zeropay.services.context import AppContext

QUESTIONS: dict[str, str] = {
    "first_school": "What was the name of your first school?",
    "childhood_street": "What was the name of the street you grew up on?",
    "first_concert": "What was the first concert you went to?",
    "childhood_friend": "What was the first name of your childhood best friend?",
    "first_job_city": "In which city was your first job?",
    "favourite_teacher": "What was the surname of your favourite teacher?",
}
ANSWER_LENGTH_MIN = 3


def normalise_answer(raw: str) -> str:
    """NFKC, case-folded, runs of white space collapsed: "  Main   STREET " == "main street"."""
    return " ".join(unicodedata.normalize("NFKC", raw).casefold().split())


def parse_answers(raw: object) -> dict[str, str]:
    """A mapping of question id to normalised answer, for enrollment."""
    if not isinstance(raw, dict):
        raise InvalidInput("answers must map question ids to answers", field="answers")
    if len(raw) != bounds.SECURITY_QUESTIONS_REQUIRED:
        raise InvalidInput(
            f"answer exactly {bounds.SECURITY_QUESTIONS_REQUIRED} questions", field="answers"
        )
    out: dict[str, str] = {}
    for question, answer in raw.items():
        if question not in QUESTIONS:
            raise InvalidInput("unknown question", field="answers", reason="unknown_question")
        if not isinstance(answer, str) or len(answer) > bounds.SECURITY_ANSWER_LENGTH_MAX:
            raise InvalidInput("answers are short strings", field="answers")
        normal = normalise_answer(answer)
        if len(normal) < ANSWER_LENGTH_MIN:
            raise InvalidInput(
                f"each answer has at least {ANSWER_LENGTH_MIN} characters", field="answers"
            )
        out[question] = normal
    if len(set(out.values())) != len(out):
        raise InvalidInput("give a different answer to each question", field="answers")
    return out


def verify_answers(ctx: AppContext, hashes: dict[str, str], raw: object) -> None:
    """Every enrolled question answered right; one ``AuthenticationFailed`` that never says
    which answer was wrong. Every hash is checked, so the time does not tell either."""
    if not hashes or not isinstance(raw, dict) or set(raw) != set(hashes):
        for stored in hashes.values():
            ctx.hasher.burn(stored)
        raise AuthenticationFailed("the factor was not accepted")
    wrong = False
    for question, stored in sorted(hashes.items()):
        answer = raw.get(question)
        if not isinstance(answer, str) or len(answer) > bounds.SECURITY_ANSWER_LENGTH_MAX:
            wrong = True
            ctx.hasher.burn(stored)
            continue
        try:
            ctx.hasher.verify(stored, normalise_answer(answer))
        except AuthenticationFailed:
            wrong = True
    if wrong:
        raise AuthenticationFailed("the factor was not accepted")
