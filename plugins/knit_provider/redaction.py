"""Scrub secrets from text built out of outside words (driver errors, Knit's answers): one redactor for all.

Airflow's secrets masker already hides, in task logs, a connection's password (the Task SDK registers it
when a task reads the connection) and every secret registered with ``mask_secret``
(``read_knit_connection`` registers the Knit API key and webhook secret). It does not see text that
leaves a process another way: a trigger event's message (stored in Airflow's database and shown as the
task's failure), an exception's text shipped to another process, the receiver's and the CLIs' output,
where no masker runs. That text goes through a :class:`Redactor`, which the Knit hook, the triggers
and the shared listener use.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MASK = "***"


class Redactor:
    """Replace every given secret in a text with ``***`` (longest first, so no secret is left half-shown)."""

    def __init__(self, *secrets: str | None) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def for_dsn(cls, dsn: str, *secrets: str | None) -> Redactor:
        """Also hide the password of a ``postgresql://`` URL, as written in it and percent-decoded."""
        password = urlsplit(dsn).password
        return cls(password, unquote(password) if password else None, *secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
