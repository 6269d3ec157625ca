"""The one place an AWS key's value is read out of its `SecretStr`.

Keys stay wrapped everywhere else, so they never show in a repr, a log line or an error message; they are unwrapped
only to travel to the worker (a pipe, never argv or the environment), to build a `SonicConfig` from OpenAvatarChat's
settings, and to sign with.
"""

from __future__ import annotations

from pydantic import SecretStr

AWS_KEY_FIELDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
"""The settings that hold AWS keys, by the same names in `SonicConfig` and the OpenAvatarChat handler's config."""


def reveal_keys(settings: object) -> dict[str, str | None]:
    """The AWS keys of ``settings`` (anything with the `AWS_KEY_FIELDS` as ``SecretStr | None``), in plain text."""
    keys: dict[str, str | None] = {}
    for name in AWS_KEY_FIELDS:
        secret: SecretStr | None = getattr(settings, name)
        keys[name] = secret.get_secret_value() if secret is not None else None
    return keys
