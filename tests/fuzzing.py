"""How many hypothesis cases the fuzz tests run (a few thousand in CI, more with `make fuzz`), and the header
mutations of the fuzz test through the real process."""

import base64
import os
import random
from collections.abc import Callable


def examples(base: int) -> int:
    # FUZZ_SCALE multiplies the CI budget (make fuzz sets 20); 1 keeps CI within minutes.
    return base * max(1, int(os.environ.get("FUZZ_SCALE", "1")))


# ---- header mutations for mail sent through the real process (tests/test_intake_isolation.py) ----------

Headers = list[tuple[bytes, bytes]]  # (name, raw value) in order; the name b"" means a line without a colon


def _word(text: str, charset: str = "utf-8", kind: str = "b") -> bytes:
    data = text.encode(charset, "replace")
    if kind == "b":
        return b"=?" + charset.encode() + b"?b?" + base64.b64encode(data) + b"?="
    return b"=?" + charset.encode() + b"?q?" + b"".join(b"=%02X" % c for c in data) + b"?="


def _long_id(rng: random.Random) -> bytes:
    return b"<" + bytes(rng.choice(b"abcdefghij0123456789.$_") for _ in range(rng.choice((251, 999, 1000, 3000)))) \
        + b"@fuzz.example>"


def _set(headers: Headers, name: bytes, value: bytes) -> None:
    for i, (n, _) in enumerate(headers):
        if n.lower() == name.lower():
            headers[i] = (n, value)
            return
    headers.append((name, value))


def _long_value(h: Headers, rng: random.Random) -> None:
    name = rng.choice((b"Subject", b"From", b"To", b"Cc", b"Reply-To", b"X-Mailer", b"List-Id"))
    size = rng.choice((999, 1001, 5000, 40_000))
    text = ("Ж" if rng.random() < 0.5 else "x") * size
    if name == b"From":
        _set(h, name, _word(text) + b" <ivanov@romashka.ru>" if rng.random() < 0.5 else text.encode() + b" <a@b.ru>")
    elif name in (b"To", b"Cc", b"Reply-To"):
        _set(h, name, b"x" * size + b"@romashka.ru, ok@romashka.ru")
    else:
        _set(h, name, text.encode())


def _long_ids(h: Headers, rng: random.Random) -> None:
    for name in rng.sample([b"Message-ID", b"In-Reply-To", b"References", b"Resent-Message-ID"], rng.randint(1, 4)):
        if name == b"References":
            ids = [_long_id(rng) if rng.random() < 0.3 else b"<r%d@fuzz.example>" % i for i in range(rng.randint(1, 300))]
            _set(h, name, b"\r\n ".join(ids))
        else:
            _set(h, name, _long_id(rng) if rng.random() < 0.8 else b"x" * 1200)  # no brackets at all


def _broken_words(h: Headers, rng: random.Random) -> None:
    words = [b"=?utf-8?b?!!!?=", b"=?koi8-r?q?=FF=FE=?=", b"=?x-unknown?b?0JjQstCw0L0=?=", b"=?utf-8?q?half",
             b"=?utf-8?b?0J?= =?utf-8?b?jQstCw?=", b"=?utf-16?b?//79?=", _word("тема", "windows-1251", "q"),
             b"=?utf-8?b?" + base64.b64encode(b"\xff\xfe\xc3") + b"?=", b"=?=?utf-8?b?=?=", b"=??b??="]
    _set(h, rng.choice((b"Subject", b"From")), b" ".join(rng.sample(words, 3)) + b" <ivanov@romashka.ru>")


def _nested_words(h: Headers, rng: random.Random) -> None:
    inner = _word("Иван\r\nBcc: victim@example.org\r\n\r\n<b>phish</b>").decode()
    _set(h, rng.choice((b"Subject", b"From")), _word(inner) + b" <ivanov@romashka.ru>")
    _set(h, b"Content-Disposition", b"inline; filename=\"" + _word(inner) + b"\"")


def _eight_bit(h: Headers, rng: random.Random) -> None:
    value = rng.choice(("Счёт на оплату".encode("cp1251"), b"\xff\xfe\xfd broken \xc3\x28", "тема".encode("koi8-r")))
    _set(h, rng.choice((b"Subject", b"From")), value + b" <ivanov@romashka.ru>")


def _nuls(h: Headers, rng: random.Random) -> None:
    for name in rng.sample([b"Subject", b"From", b"Message-ID", b"In-Reply-To", b"To"], 2):
        value = next((v for n, v in h if n.lower() == name.lower()), b"<nul@fuzz.example>")
        cut = rng.randrange(len(value) + 1)
        _set(h, name, value[:cut] + b"\x00" * rng.randint(1, 3) + value[cut:])


def _duplicates(h: Headers, rng: random.Random) -> None:
    for name, value in rng.sample([(n, v) for n, v in h if n], min(3, len(h))):
        for _ in range(rng.randint(1, 3)):
            h.insert(rng.randrange(len(h) + 1), (name, value + b" " + str(rng.random()).encode()))


def _missing(h: Headers, rng: random.Random) -> None:
    drop = set(rng.sample([b"from", b"subject", b"message-id", b"date", b"to", b"mime-version"], rng.randint(1, 4)))
    h[:] = [(n, v) for n, v in h if n.lower() not in drop]


def _long_address(h: Headers, rng: random.Random) -> None:
    _set(h, b"From", b"Name <" + b"l" * rng.choice((65, 321, 2000)) + b"@" + b"d" * rng.choice((10, 300)) + b".ru>")


def _odd_lines(h: Headers, rng: random.Random) -> None:
    h.insert(rng.randrange(len(h) + 1), (b"", b"this line has no colon " * rng.randint(1, 50)))
    h.append((b"X-Folded", b"\r\n ".join([b"part"] * rng.randint(10, 3000))))
    h.append((b"X-" + b"N" * rng.choice((10, 2000)), b"v"))


HEADER_MUTATIONS: tuple[Callable[[Headers, random.Random], None], ...] = (
    _long_value, _long_ids, _broken_words, _nested_words, _eight_bit, _nuls, _duplicates, _missing,
    _long_address, _odd_lines,
)


def fuzz_mail(n: int, rng: random.Random, sender: str = "ivanov@romashka.ru") -> bytes:
    """A support request whose headers are mutated 1-3 times (and, for some, an attachment with a
    hostile name and type); the body carries `n`, so no two mails are the same bytes."""
    headers: Headers = [
        (b"From", f"Иван Иванов <{sender}>".encode()),
        (b"To", b"support@storeolis.ru"),
        (b"Subject", _word(f"Запрос {n}: не работает касса")),
        (b"Date", b"Wed, 25 Nov 2026 10:00:00 +0300"),
        (b"Message-ID", b"<fuzz%d.%d@romashka.ru>" % (n, rng.randrange(10**9))),
        (b"MIME-Version", b"1.0"),
    ]
    for mutation in rng.sample(HEADER_MUTATIONS, rng.randint(1, 3)):
        mutation(headers, rng)
    body = f"Здравствуйте! Касса не печатает чек, письмо {n}.".encode()
    if rng.random() < 0.3:
        name = rng.choice((b"=?utf-8?b?" + base64.b64encode(("ф" * 400 + ".pdf").encode()) + b"?=",
                           b"\"" + b"\x00\r\n" + b"n" * 3000 + b".pdf\"", b"*0*=utf-8''%D1%84%00%0D%0A.pdf"))
        ctype = rng.choice((b"application/pdf", b"application/" + b"q" * 600, b"text/plain; charset=utf-8 x"))
        headers.append((b"Content-Type", b'multipart/mixed; boundary="fz"'))
        body = (b"--fz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n--fz\r\nContent-Type: "
                + ctype + b"; name=" + name + b"\r\nContent-Disposition: attachment; filename=" + name
                + b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--fz--\r\n")
    elif not any(n.lower() == b"content-type" for n, _ in headers):
        headers.append((b"Content-Type", b"text/plain; charset=utf-8"))
    lines = [(name + b": " + value) if name else value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
