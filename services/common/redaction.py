"""Keeping secrets out of logs and messages: the password of a URL (``redis://user:pw@host``),
and the values of the settings that are secrets.

Every URL a process logs goes through ``redact_url``; every line the processes log goes
through a ``Redactor`` (``services.common.logging``), which also catches a URL that Celery,
kombu or redis-py put in their own messages, and a secret a message quotes bare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

#: What replaces a secret.
HIDDEN = "***"

# A URL's scheme and user, then ``:``, the password and ``@``: up to the last ``@`` before a
# blank or a quote, so that a password that was not percent-encoded (one holding ``/``,
# ``#``, ``?`` or ``@``) is hidden whole.
_USERINFO = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@"'<>]*):[^\s"'<>]*@""")


def redact_url(url: str) -> str:
    """``url`` with its password, if it has one, replaced by ``***``; the user name stays.
    A password that was not percent-encoded is hidden whole: everything between the user
    name's colon and the last ``@`` (in a URL whose query holds an ``@`` after a port,
    some of the address with it: more hidden, never less)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not sep or not at or not colon or any(c in user for c in "/?#"):
        return url
    return f"{scheme}://{user}:{HIDDEN}@{host}"


class Redactor:
    """Hides, in any text, the password of every URL and each of ``secrets`` (as given and
    percent-encoded, as a URL holds it)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for secret in secrets if secret
                 for form in (secret, quote(secret, safe=""))}
        # The longest first: a secret that holds another is hidden whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if "://" in text:
            text = _USERINFO.sub(rf"\1:{HIDDEN}@", text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text
