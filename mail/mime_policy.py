"""`email.policy.default` with memoized header objects, for parsing inbound mail.

Under `policy.default` every `Message.get()` builds a new header object by running the full RFC 5322
header parser on the raw value. The email package itself calls `get_content_type()` /
`get_content_maintype()` several times per part while parsing (and `get_payload()` reads
Content-Transfer-Encoding), so the same few Content-Type values are parsed again and again: that was the
largest single cost of `mail.parse`.

`CachingPolicy` keeps the settings of `policy.default` and only memoizes `header_fetch_parse`:

* Safe: the header object is a pure function of (name, raw value) -- `header_fetch_parse` does nothing
  else -- and header objects are immutable `str` subclasses (their parse tree, params and defects are
  not changed after construction), so one object can be handed to any number of messages.
* Bounded: an LRU of `CACHE_ENTRIES` entries, and values longer than `MAX_CACHED_VALUE` characters are
  never cached. Header objects keep their parse tree, which is big: ~11 KB for a usual
  `multipart/alternative; boundary="..."`, up to ~450 bytes per character for a value stuffed with
  parameters. So the cache stays well under 15 MB per process even when fed hostile headers, while the
  few values one message re-reads (and the common part types shared by many messages) always fit.
"""

from __future__ import annotations

import functools
from email.headerregistry import BaseHeader
from email.policy import EmailPolicy

CACHE_ENTRIES = 128
MAX_CACHED_VALUE = 200  # characters; Content-Type/-Transfer-Encoding/-Disposition values are usually < 100


class CachingPolicy(EmailPolicy):
    """`policy.default` (same settings) whose header objects are shared through a bounded LRU cache."""

    def header_fetch_parse(self, name: str, value: str) -> BaseHeader:
        # Values set through the API are already header objects (they have .name): returned unchanged.
        if hasattr(value, "name") or len(value) > MAX_CACHED_VALUE:
            return super().header_fetch_parse(name, value)
        return _cached_header(self, name, value)


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _cached_header(policy: EmailPolicy, name: str, value: str) -> BaseHeader:
    # `policy` is part of the key so a clone with another header_factory never gets foreign objects.
    # The raw value from the parser is a plain str, so the key compares exactly what the parser would see.
    return EmailPolicy.header_fetch_parse(policy, name, value)


# Hits, misses and current size of the header cache (for tests and diagnostics).
cache_info = _cached_header.cache_info


# Module-level instance, like `email.policy.default`.
default = CachingPolicy()
