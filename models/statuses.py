"""The status and direction values of the tables, apart from the ORM: code that only needs the values
(the policy's text work in the parse workers) need not import tortoise and the models."""

from __future__ import annotations

import enum


class TicketStatus(enum.StrEnum):
    NEW = "new"  # waiting for the first staff decision (SLA clock running)
    ACCEPTED = "accepted"
    REFUSED = "refused"
    ANSWERED = "answered"  # answered from FAQ (2.5)
    CLOSED = "closed"  # resolved
    MERGED = "merged"  # joined into another ticket (Ticket.merged_into): not a separate request (2.6)


class RawMailStatus(enum.StrEnum):
    STORED = "stored"  # raw bytes committed, not yet turned into a ticket message
    PROCESSED = "processed"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"  # the same bytes were already stored (e.g. after a UIDVALIDITY change)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # an attempt was recorded before talking to the remote server
    SENT = "sent"
    FAILED = "failed"  # permanent failure, staff told
    CANCELLED = "cancelled"  # e.g. a refusal undone within its grace period


class MessageDirection(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"
    NOTE = "note"  # internal staff note, never emailed
