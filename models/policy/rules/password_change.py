"""1.1: a request to change or reset an access password is its own kind of request.

Support changes passwords only when the client cannot do it alone, and only for a confirmed client:
when the sender is not identified by a registered address, or its mail failed authentication, the
finding is a warning not to change anything before confirming identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.policy.base import Finding, FindingCode, PolicyConfig, PolicyContext, PolicyRequest, Rule
from models.policy.lemmas import PhraseMatcher

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData

PHRASES = (
    "сменить пароль", "изменить пароль", "поменять пароль", "сбросить пароль", "сброс пароля",
    "восстановить пароль", "восстановление пароля", "новый пароль", "забыть пароль", "не помнить пароль",
    "не мочь войти", "не получаться войти", "не удаваться войти", "не пускать в личный кабинет",
    "восстановить доступ", "утерять доступ", "потерять доступ",
    "reset password", "reset my password", "change password", "change my password", "forgot password",
    "forgot my password", "new password", "cannot log in", "can t log in", "can not log in",
    "cannot sign in", "can t sign in", "lost access",
)


def load_password_matcher(config: PolicyConfig) -> PhraseMatcher:
    return PhraseMatcher((("password", p) for p in PHRASES), max_gap=2)


class PasswordChangeRule(Rule):
    code = FindingCode.PASSWORD_CHANGE
    clause = "1.1"
    title_ru = "Запрос на смену пароля"
    title_en = "Password change request"
    loaders = (load_password_matcher,)

    def analyse(self, message: InboundMessage, data: PolicyData) -> list[dict[str, Any]]:
        matcher = data.get(load_password_matcher)
        return [{"phrase": h.phrase, "text": h.text, "where": where, "start": h.start, "end": h.end}
                for where, text in (("subject", message.subject), ("body", message.new_text))
                for h in matcher.find(text)]

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        hits: list[dict[str, Any]] = self.analysis(req, ctx)
        if not hits:
            return []
        ctx.is_password_change = True
        confirmed = (ctx.client is not None and ctx.client.matched_by in ("address", "domain")
                     and ctx.sender_verified is not False)
        if confirmed:
            return [self.finding({"matches": hits}, "info")]
        why = "client not identified by a registered address" if ctx.client is None or \
            ctx.client.matched_by not in ("address", "domain") else "sender not verified"
        return [self.finding(
            {"matches": hits, "reason": why,
             "warning": "sender not verified: do not change the password without confirming identity",
             "warning_ru": "отправитель не подтверждён: не меняйте пароль без подтверждения личности"},
            "warn")]
