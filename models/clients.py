"""The client registry as CSV: `name,inn,contract,emails` (+ optional `active`).

`emails` holds addresses and `@domain` entries separated by `;`. The file may be UTF-8 (with or without a
BOM) or Windows-1251, separated by `,` or `;`, with any line endings: what Excel saves in Russia. Import is all-or-nothing (every row
is validated before anything is written, then one transaction) and idempotent: a client is found
again by INN, else by contract number, else by name, and updated in place.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from tortoise.transactions import in_transaction

from models.policy.inn import is_valid_inn
from models.tables import Client, ClientAddress

REQUIRED_COLUMNS = ("name", "inn", "contract", "emails")
_ADDRESS = re.compile(r"^[^@\s;,<>]+@[a-z0-9.-]+\.[a-z0-9-]{2,}$")
_DOMAIN = re.compile(r"^@[a-z0-9.-]+\.[a-z0-9-]{2,}$")
_TRUE = {"1", "yes", "true", "да", "y", ""}
_FALSE = {"0", "no", "false", "нет", "n"}


class ImportError_(Exception):
    """The file cannot be imported; `problems` names each bad line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ClientRow:
    line: int
    name: str
    inn: str | None
    contract: str | None
    addresses: list[str]
    active: bool = True


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    addresses: int = 0
    notes: list[str] = field(default_factory=list)


def decode_registry(data: bytes) -> str:
    """The file's text: UTF-8 (a BOM is dropped) or else Windows-1251 (Excel's "CSV" in a Russian Windows)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1251")
    except UnicodeDecodeError as exc:
        raise ImportError_(
            [f"byte {exc.start + 1}: the file is neither UTF-8 nor Windows-1251 text; save it as \"CSV UTF-8\""]
        ) from None


def _delimiter(text: str) -> str:
    """`;` when the header line is split by it (Excel with a Russian locale), else `,`. Judged on the header
    only: the emails column itself holds `;` between addresses."""
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    return ";" if first.count(";") > first.count(",") else ","


def parse_csv(text: str) -> list[ClientRow]:
    """Validate the whole file; raise ImportError_ listing every bad line (1-based, header is line 1)."""
    delimiter = _delimiter(text)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        found = delimiter.join(header) if any(header) else "nothing (the file is empty)"
        raise ImportError_([
            f"line 1: missing column(s) {', '.join(missing)}: the header reads {found!r} (separator {delimiter!r}); "
            "expected: name,inn,contract,emails (separated by , or ;)"
        ])
    reader.fieldnames = header
    rows: list[ClientRow] = []
    problems: list[str] = []
    seen_inn: dict[str, int] = {}
    for number, record in enumerate(reader, start=2):
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue  # blank line
        row, errors = _parse_row(number, record)
        if row and row.inn:
            if row.inn in seen_inn:
                errors.append(f"INN {row.inn} already on line {seen_inn[row.inn]}")
            seen_inn.setdefault(row.inn, number)
        problems.extend(f"line {number}: {e}" for e in errors)
        if row and not errors:
            rows.append(row)
    if problems:
        raise ImportError_(problems)
    return rows


def _parse_row(number: int, record: dict[str, str | None]) -> tuple[ClientRow | None, list[str]]:
    errors: list[str] = []
    name = (record.get("name") or "").strip()
    inn = re.sub(r"\s", "", record.get("inn") or "") or None
    contract = (record.get("contract") or "").strip() or None
    if not name:
        errors.append("name is empty")
    if inn and not is_valid_inn(inn):
        errors.append(f"INN {inn!r} is not a valid 10- or 12-digit INN (checksum)")
    addresses: list[str] = []
    for item in (record.get("emails") or "").split(";"):
        value = item.strip().lower()
        if not value:
            continue
        if not (_ADDRESS.match(value) or _DOMAIN.match(value)):
            errors.append(f"{item.strip()!r} is neither an email address nor an @domain entry")
        elif value not in addresses:
            addresses.append(value)
    if not addresses and not inn and not contract:
        errors.append("no emails, INN or contract: the client could never be identified")
    active_raw = (record.get("active") or "").strip().lower()
    if active_raw not in _TRUE | _FALSE:
        errors.append(f"active must be yes/no, got {active_raw!r}")
    row = ClientRow(number, name, inn, contract, addresses, active_raw not in _FALSE)
    return row, errors


async def import_clients(text: str) -> ImportReport:
    rows = parse_csv(text)
    report = ImportReport()
    async with in_transaction():
        for row in rows:
            client = await _find_existing(row)
            if client is None:
                client = await Client.create(name=row.name, inn=row.inn, contract=row.contract, active=row.active)
                report.created += 1
            else:
                before = (client.name, client.inn, client.contract, client.active)
                client.name, client.inn, client.contract, client.active = row.name, row.inn, row.contract, row.active
                existing = sorted(await ClientAddress.filter(client_id=client.id).values_list("value", flat=True))
                if before == (row.name, row.inn, row.contract, row.active) and existing == sorted(row.addresses):
                    report.unchanged += 1
                    continue
                await client.save()
                report.updated += 1
            await ClientAddress.filter(client_id=client.id).exclude(value__in=row.addresses).delete()
            have = set(await ClientAddress.filter(client_id=client.id).values_list("value", flat=True))
            new = [
                ClientAddress(client_id=client.id, value=a, is_domain=a.startswith("@"))
                for a in row.addresses
                if a not in have
            ]
            if new:
                await ClientAddress.bulk_create(new)
            report.addresses += len(row.addresses)
    return report


async def _find_existing(row: ClientRow) -> Client | None:
    if row.inn:
        found = await Client.filter(inn=row.inn).first()
        if found:
            return found
    if row.contract:
        found = await Client.filter(contract=row.contract).first()
        if found:
            return found
    return await Client.filter(name=row.name, inn=None, contract=None).first() if not row.inn else None


async def export_clients() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*REQUIRED_COLUMNS, "active"])
    for client in await Client.all().order_by("id").prefetch_related("addresses"):
        emails = ";".join(sorted(a.value for a in client.addresses))
        writer.writerow(
            [client.name, client.inn or "", client.contract or "", emails, "yes" if client.active else "no"]
        )
    return out.getvalue()
