"""Security questions: chosen from a fixed list, answers normalised and hashed with argon2id,
never shown again. They are weak on their own (NIST 800-63B does not accept them; ASVS 2.5.2
forbids them alone for recovery), so the policy pairs them with a passkey and never uses them
alone.

Which questions a user chose is a hint too (whoever knows them knows what to research), so the
database holds a slot number and the question id sealed under the user's own key, bound to
(user, slot): a stolen copy does not say which questions were chosen, and erasing the user
shreds the choice with the rest."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from zeropay.domain import bounds
from zeropay.domain.errors import AuthenticationFailed, InvalidInput, invariant
from zeropay.services.context import AppContext
from zeropay.services.ports import StoredAnswer

QUESTIONS: dict[str, str] = {
    "first_school": "What was the name of your first school?",
    "childhood_street": "What was the name of the street you grew up on?",
    "first_concert": "What was the first concert you went to?",
    "childhood_friend": "What was the first name of your childhood best friend?",
    "first_job_city": "In which city was your first job?",
    "favourite_teacher": "What was the surname of your favourite teacher?",
}
ANSWER_LENGTH_MIN = 3
CHOICE_TABLE, CHOICE_COLUMN = "security_answers", "question"
# Every question id is sealed padded to one length: the ids run from 12 to 17 characters, so an
# unpadded ciphertext's length would name the question.
QUESTION_ID_PADDED_BYTES = 32
invariant(
    all(0 < len(q.encode()) <= QUESTION_ID_PADDED_BYTES and q.isascii() for q in QUESTIONS),
    "every question id fits the padded length, so every sealed choice is as long as the others",
)


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


def choice_row_id(user_id: str, slot: int) -> str:
    """The row a sealed choice is bound to: moved to another slot or user, it fails to open."""
    return f"{user_id}:{slot}"


def seal_choices(ctx: AppContext, user_id: str, hashes: dict[str, str]) -> list[StoredAnswer]:
    """Answer hashes by question id, as rows: slots 1, 2, ... in question-id order, each id
    padded and sealed under the user's key (``subject``), which erasure destroys."""
    return [
        StoredAnswer(
            user_id=user_id,
            slot=slot,
            question_ciphertext=ctx.keyring.encrypt(
                question.encode().ljust(QUESTION_ID_PADDED_BYTES, b"\0"),
                table=CHOICE_TABLE,
                column=CHOICE_COLUMN,
                row_id=choice_row_id(user_id, slot),
                subject=user_id,
            ),
            answer_hash=answer_hash,
        )
        for slot, (question, answer_hash) in enumerate(sorted(hashes.items()), start=1)
    ]


def open_choices(ctx: AppContext, stored: Sequence[StoredAnswer]) -> dict[str, str]:
    """The answer hashes by question id, the ids unsealed from their rows."""
    out: dict[str, str] = {}
    for answer in stored:
        padded = ctx.keyring.decrypt(
            answer.question_ciphertext,
            table=CHOICE_TABLE,
            column=CHOICE_COLUMN,
            row_id=choice_row_id(answer.user_id, answer.slot),
        )
        out[padded.rstrip(b"\0").decode("ascii")] = answer.answer_hash
    return out


def verify_answers(ctx: AppContext, stored: Sequence[StoredAnswer], raw: object) -> None:
    """Every enrolled question answered right; one ``AuthenticationFailed`` that never says
    which answer was wrong. Every hash is checked, so the time does not tell either."""
    hashes = open_choices(ctx, stored)
    if not hashes or not isinstance(raw, dict) or set(raw) != set(hashes):
        for answer_hash in hashes.values():
            ctx.hasher.burn(answer_hash)
        raise AuthenticationFailed("the factor was not accepted")
    wrong = False
    for question, answer_hash in sorted(hashes.items()):
        answer = raw.get(question)
        if not isinstance(answer, str) or len(answer) > bounds.SECURITY_ANSWER_LENGTH_MAX:
            wrong = True
            ctx.hasher.burn(answer_hash)
            continue
        try:
            ctx.hasher.verify(answer_hash, normalise_answer(answer))
        except AuthenticationFailed:
            wrong = True
    if wrong:
        raise AuthenticationFailed("the factor was not accepted")
