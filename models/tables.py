"""Database tables (tortoise-orm). The database is the source of truth: a Telegram card is a view
of a ticket, an outbox row is a promise to deliver exactly once.

Uniqueness constraints here are what make ingestion and delivery idempotent:
- RawMail (mailbox, uidvalidity, uid) and RawMail.sha256: a message fetched twice is stored once;
- EmailOutbox.idempotency_key / TelegramOutbox.idempotency_key: one staff action, one effect.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model
from tortoise.signals import pre_save

from models.statuses import MessageDirection, OutboxStatus, RawMailStatus, TicketStatus

# Docstrings below become SQL table comments in migrations: keep each on one line, without ";".


class Client(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=300)
    inn = fields.CharField(max_length=12, null=True, db_index=True)
    contract = fields.CharField(max_length=100, null=True, db_index=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "client"


class ClientAddress(Model):
    """A registered email address (a@b.ru) or a whole domain (@b.ru), lower-cased."""

    id = fields.IntField(primary_key=True)
    client: fields.ForeignKeyRelation[Client] = fields.ForeignKeyField(
        "models.Client", related_name="addresses", on_delete=fields.CASCADE
    )
    value = fields.CharField(max_length=320, db_index=True)
    is_domain = fields.BooleanField(default=False)

    class Meta:
        table = "client_address"
        unique_together = (("client", "value"),)


class StaffMember(Model):
    id = fields.IntField(primary_key=True)
    telegram_id = fields.BigIntField(unique=True)
    name = fields.CharField(max_length=200, default="")
    username = fields.CharField(max_length=100, null=True, db_index=True)
    is_oncall = fields.BooleanField(default=False)
    started_bot = fields.BooleanField(default=False)  # a private chat exists, so DMs can reach them
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "staff_member"


class SavedReply(Model):
    """A staff reply kept under a name (/savereply), its text with {variables} (models/saved_replies.py)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)  # folded to lower case: /delreply Name finds "name"
    text = fields.TextField()
    created_by: fields.ForeignKeyNullableRelation[StaffMember] = fields.ForeignKeyField(
        "models.StaffMember", related_name="saved_replies", null=True, on_delete=fields.SET_NULL
    )
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "saved_reply"


class Ticket(Model):
    """One client request. The primary key is the human ticket number (#123)."""

    id = fields.IntField(primary_key=True)
    client: fields.ForeignKeyNullableRelation[Client] = fields.ForeignKeyField(
        "models.Client", related_name="tickets", null=True, on_delete=fields.SET_NULL
    )
    status = fields.CharEnumField(TicketStatus, default=TicketStatus.NEW, max_length=16)
    arrived_at = fields.DatetimeField()  # IMAP INTERNALDATE of the first message (2.3 order)
    arrival_uid = fields.BigIntField(default=0)  # tie-breaker for the queue order
    month_key = fields.CharField(max_length=7)  # "2026-11" in TIMEZONE, for the monthly limit
    counts_toward_limit = fields.BooleanField(default=True)
    sla_due_at = fields.DatetimeField(null=True)
    next_alert_at = fields.DatetimeField(null=True)  # the next SLA alert due; null when none is left
    first_decided_at = fields.DatetimeField(null=True)
    subject = fields.CharField(max_length=1000, default="")
    sender_address = fields.CharField(max_length=320, default="", db_index=True)
    sender_name = fields.CharField(max_length=300, default="")
    content_hash = fields.CharField(max_length=64, default="", db_index=True)
    verdict = fields.JSONField(default=dict)  # the policy verdict at arrival (findings with evidence)
    refuse_reason = fields.CharField(max_length=32, null=True)
    duplicate_of: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="duplicates", null=True, on_delete=fields.SET_NULL
    )
    assignee: fields.ForeignKeyNullableRelation[StaffMember] = fields.ForeignKeyField(
        "models.StaffMember", related_name="tickets", null=True, on_delete=fields.SET_NULL
    )
    merged_into: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="merged", null=True, on_delete=fields.SET_NULL
    )
    card_chat_id = fields.BigIntField(null=True)
    card_message_id = fields.BigIntField(null=True)
    language = fields.CharField(max_length=2, default="ru")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "ticket"
        indexes = (
            ("client_id", "month_key"),
            ("client_id", "arrived_at"),
            ("sender_address", "arrived_at"),
            ("status", "arrived_at"),
            ("status", "sla_due_at"),
            ("status", "next_alert_at"),
        )


class Message(Model):
    """One message in the thread of a ticket: client mail, our email, or an internal note."""

    id = fields.IntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="messages", on_delete=fields.CASCADE
    )
    direction = fields.CharEnumField(MessageDirection, max_length=8)
    kind = fields.CharField(max_length=32, default="request")  # request/followup/auto_reply/bounce/reply/...
    message_id = fields.CharField(max_length=998, null=True, db_index=True)
    in_reply_to = fields.CharField(max_length=998, null=True)
    references = fields.TextField(default="")
    from_address = fields.CharField(max_length=320, default="")
    from_name = fields.CharField(max_length=300, default="")
    to = fields.TextField(default="")
    cc = fields.TextField(default="")
    subject = fields.CharField(max_length=1000, default="")
    text = fields.TextField(default="")
    new_text = fields.TextField(default="")
    size = fields.IntField(default=0)
    attachments = fields.JSONField(default=list)
    raw_mail: fields.ForeignKeyNullableRelation[RawMail] = fields.ForeignKeyField(
        "models.RawMail", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    staff: fields.ForeignKeyNullableRelation[StaffMember] = fields.ForeignKeyField(
        "models.StaffMember", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    telegram_message_id = fields.BigIntField(null=True, db_index=True)  # post of this message in the chat
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "message"
        indexes = (("ticket_id", "id"),)


class RawMail(Model):
    """The exact bytes fetched from the mailbox, committed before the mail is flagged on the server.

    The bytes themselves are in RawMailContent (same id), so a status update does not rewrite them."""

    id = fields.IntField(primary_key=True)
    mailbox = fields.CharField(max_length=200)
    uidvalidity = fields.BigIntField()
    uid = fields.BigIntField()
    internal_date = fields.DatetimeField()
    sha256 = fields.CharField(max_length=64, db_index=True)
    size = fields.IntField()
    status = fields.CharEnumField(RawMailStatus, default=RawMailStatus.STORED, max_length=16)
    error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "raw_mail"
        unique_together = (("mailbox", "uidvalidity", "uid"),)
        indexes = (("status", "internal_date"),)


class RawMailContent(Model):
    """The bytes of one raw mail, keyed by its id.

    `id` is the raw mail's id (a foreign key in the database, see migration 0002) and the blob is the
    last column, which lets SQLite write a big one in place (models/store/raw_store.py) and keeps `raw_mail` rows
    small for the status updates."""

    id = fields.IntField(primary_key=True, generated=False)
    content = fields.BinaryField()

    class Meta:
        table = "raw_mail_content"


class MailCursor(Model):
    """The durable IMAP checkpoint of one mailbox folder."""

    id = fields.IntField(primary_key=True)
    mailbox = fields.CharField(max_length=200, unique=True)
    uidvalidity = fields.BigIntField(default=0)
    last_uid = fields.BigIntField(default=0)
    last_sync_at = fields.DatetimeField(null=True)

    class Meta:
        table = "mail_cursor"


class Decision(Model):
    """Audit trail: every decision and notable event on a ticket (who, what, when)."""

    id = fields.IntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="decisions", on_delete=fields.CASCADE
    )
    staff: fields.ForeignKeyNullableRelation[StaffMember] = fields.ForeignKeyField(
        "models.StaffMember", related_name="decisions", null=True, on_delete=fields.SET_NULL
    )
    action = fields.CharField(max_length=32)
    reason = fields.CharField(max_length=64, null=True)
    comment = fields.TextField(default="")
    details = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "decision"


class EmailOutbox(Model):
    """An email we promised to send."""

    # The raw bytes are composed when the row is written, or, for a draft (an acknowledgement), once
    # when it is first sent and then stored here: a retry sends exactly the same message (same
    # Message-ID). Docstrings become table comments: keep them on one line.

    id = fields.IntField(primary_key=True)
    idempotency_key = fields.CharField(max_length=200, unique=True)
    ticket: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="emails", null=True, on_delete=fields.SET_NULL
    )
    event = fields.CharField(max_length=40)
    message_id = fields.CharField(max_length=998, unique=True)
    recipients = fields.JSONField(default=list)
    content = fields.BinaryField()
    draft = fields.JSONField(null=True)  # models.ports.EmailDraft, while `content` is empty (mail/drafts.py)
    status = fields.CharEnumField(OutboxStatus, default=OutboxStatus.PENDING, max_length=16)
    attempts = fields.IntField(default=0)
    not_before = fields.DatetimeField()  # grace periods and backoff
    last_error = fields.TextField(null=True)
    ambiguous_resend = fields.BooleanField(default=False)  # a crash fell between SMTP answer and commit
    sent_at = fields.DatetimeField(null=True)
    delivery_failed = fields.BooleanField(default=False)  # a bounce came back for it
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "email_outbox"
        indexes = (("status", "not_before"),)


class TelegramOutbox(Model):
    """A post or edit we promised to make in Telegram."""

    id = fields.IntField(primary_key=True)
    idempotency_key = fields.CharField(max_length=200, unique=True)
    ticket: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="telegram_posts", null=True, on_delete=fields.SET_NULL
    )
    kind = fields.CharField(max_length=32)  # card, card_edit, followup, notice, alert, document, ...
    chat_id = fields.BigIntField()
    payload = fields.JSONField(default=dict)
    status = fields.CharEnumField(OutboxStatus, default=OutboxStatus.PENDING, max_length=16)
    attempts = fields.IntField(default=0)
    not_before = fields.DatetimeField()
    last_error = fields.TextField(null=True)
    result_message_id = fields.BigIntField(null=True)
    sent_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "telegram_outbox"
        indexes = (("status", "not_before"),)


class SlaAlert(Model):
    """One fired SLA alert threshold for one ticket (the unique pair makes each fire once)."""

    id = fields.IntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="sla_alerts", on_delete=fields.CASCADE
    )
    threshold = fields.CharField(max_length=40)
    fired_at = fields.DatetimeField()

    class Meta:
        table = "sla_alert"
        unique_together = (("ticket", "threshold"),)


class KeyValue(Model):
    """Small persistent facts: settings changed at run time, one-time warnings already given."""

    key = fields.CharField(max_length=200, primary_key=True)
    value = fields.JSONField(default=dict)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "key_value"


class Lease(Model):
    """A time-limited claim that one process holds a singleton role (mail watcher, SLA scheduler)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    holder = fields.CharField(max_length=200)  # INSTANCE_NAME of the process holding it
    expires_at = fields.DatetimeField()  # the holder must renew before this, or anyone may take over
    acquired_at = fields.DatetimeField()

    class Meta:
        table = "lease"


def _strip_nul(value: object) -> object:
    if type(value) is str:  # enum members (CharEnumField) stay enum members
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    return value


_TEXT_FIELDS = (fields.CharField, fields.TextField, fields.JSONField)


def strip_nul_fields(instance: Model) -> None:
    """PostgreSQL text and JSON columns cannot hold NUL characters, which hostile mail may carry:
    every saved text drops them, so SQLite and PostgreSQL store the same thing."""
    for name, field in instance._meta.fields_map.items():
        if isinstance(field, _TEXT_FIELDS):
            value = getattr(instance, name, None)
            if value is not None:
                setattr(instance, name, _strip_nul(value))


@pre_save(Client, ClientAddress, StaffMember, Ticket, Message, Decision, EmailOutbox, TelegramOutbox, KeyValue)
async def _no_nul_characters(sender: type[Model], instance: Model, using_db: object, update_fields: object) -> None:
    strip_nul_fields(instance)  # bulk_create and RowInserter fire no signal: their rows come NUL-free
