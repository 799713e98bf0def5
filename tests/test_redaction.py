"""The one redactor: secrets, and a DSN's password as written and decoded, never reach a message."""

from __future__ import annotations

from knit_provider.redaction import Redactor


def test_every_secret_is_masked_longest_first() -> None:
    redact = Redactor("key-123", None, "", "key-123-and-more")
    assert redact("sent key-123-and-more, then key-123") == "sent ***, then ***"


def test_a_dsn_password_is_masked_as_written_and_decoded() -> None:
    redact = Redactor.for_dsn("postgresql://knit:p%40ss%2Fw0rd@db:5432/landing", "api-key")
    message = "FATAL: password p@ss/w0rd rejected for postgresql://knit:p%40ss%2Fw0rd@db (api-key)"
    assert redact(message) == "FATAL: password *** rejected for postgresql://knit:***@db (***)"


def test_a_dsn_without_password_changes_nothing() -> None:
    assert Redactor.for_dsn("postgresql://knit@db/landing")("nothing secret") == "nothing secret"
