"""Keep secrets out of everything booking-etl prints, logs or stores."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<post>@)", re.I
)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Replace every known secret and every password inside a URL with ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return _URL_PASSWORD.sub(r"\g<pre>***\g<post>", text)
