"""Credentials for an S3-compatible store, kept where Prefect masks them.

`S3Credentials` is a Prefect block whose key, secret and token are `SecretStr` fields: the API
returns them masked unless a caller asks for secrets explicitly, `prefect block inspect` and the UI
show stars, and a flow run's parameters carry only the block's name (`credentials_block=`).
Storage options passed as plain flow parameters, by contrast, are stored with the run in clear:
`plain_secrets` finds such options so the flows can warn about them.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from tasks.errors import UsageError

#: Storage options that carry a secret (s3fs's names).
SECRET_OPTIONS = ("key", "secret", "token", "username", "password")


class S3Credentials(Block):
    """An access key for an S3-compatible store; Prefect masks every field of it."""

    _block_type_name = "ferry S3 credentials"
    _block_type_slug = "ferry-s3-credentials"
    _description = "Access key for an S3-compatible store, used by ferry's flows and data streams."

    key: SecretStr = Field(description="Access key id.")
    secret: SecretStr = Field(description="Secret access key.")
    token: SecretStr | None = Field(None, description="Session token, for temporary keys.")

    def storage_options(self) -> dict[str, Any]:
        """The s3fs options these credentials stand for."""
        options = {"key": self.key.get_secret_value(), "secret": self.secret.get_secret_value()}
        if self.token is not None:
            options["token"] = self.token.get_secret_value()
        return options


def save_credentials(name: str, key: str, secret: str, token: str | None = None) -> None:
    S3Credentials(key=key, secret=secret, token=token).save(name, overwrite=True)


def credential_options(block: str | None) -> dict[str, Any]:
    """The storage options of the credentials block of this name ({} for None)."""
    if not block:
        return {}
    try:
        return S3Credentials.load(block).storage_options()
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise UsageError(
            "no ferry-s3-credentials block of this name (create one in the Prefect UI's Blocks "
            "page, with `ferry credentials create`, or S3Credentials(...).save(name))",
            where=block,
        ) from None


def with_credentials(options: dict[str, Any] | None, block: str | None) -> dict[str, Any] | None:
    """`options` with the block's credentials added (explicit options win)."""
    if not block:
        return options
    return {**credential_options(block), **(options or {})}


def plain_secrets(**sides: dict[str, Any] | None) -> list[str]:
    """`side.option` for every secret passed as a plain storage option."""
    return [
        f"{side}.{name}"
        for side, options in sides.items()
        for name in SECRET_OPTIONS
        if (options or {}).get(name)
    ]


def warn_plain_secrets(**sides: dict[str, Any] | None) -> None:
    """One warning line, in the flow run's log, when a secret arrived as a plain option."""
    found = plain_secrets(**sides)
    if not found:
        return
    from prefect.logging import get_run_logger

    get_run_logger().warning(
        "%s passed as plain storage options: Prefect stores flow parameters with the run, in "
        "clear; pass credentials_block=<a ferry-s3-credentials block> instead",
        ", ".join(found),
    )


def for_url(url: str, options: dict[str, Any] | None, block: str | None) -> dict[str, Any] | None:
    """The storage options of one side of a task: the block's credentials are added when the side
    is an S3 store (`s3://...`); a directory, and a Google or Azure store (whose credentials
    are their own storage options or environment), keep their options as they are."""
    from tasks.endpoints import OBJECT_PROTOCOLS

    scheme, sep, _ = (url or "").strip().partition("://")
    if block and sep and OBJECT_PROTOCOLS.get(scheme.lower()) == "s3":
        return with_credentials(options, block)
    return options
