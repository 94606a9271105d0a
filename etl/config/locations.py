"""Where the Parquet dataset goes: ``s3://bucket/prefix`` URIs, S3 endpoints, and the secret
credential values in the environment.

Plain parsing, no pyarrow: the config models validate with it; the object store (which
opens the S3 filesystem) builds on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` split into its bucket and its (possibly empty) key prefix."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        """The location as written in the config (normalized: no trailing slash)."""
        return f"s3://{self.path}"

    @property
    def path(self) -> str:
        """``bucket/prefix``: how pyarrow's S3FileSystem names it."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    @staticmethod
    def parse(text: str) -> S3Location | None:
        """The location of an ``s3://`` URI, None for a local path; ValueError for a bad URI."""
        match = _SCHEME.match(text)
        if match is None:
            return None
        scheme = match.group(1).lower()
        if scheme != "s3":
            raise ValueError(
                f"unsupported scheme {scheme!r} in {text!r}: use a local path or s3://bucket/prefix"
            )
        rest = text[match.end() :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {text!r}: write s3://bucket or s3://bucket/prefix")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(
                f"invalid bucket name {bucket!r} in {text!r}: 3-63 lowercase letters, digits, "
                "'.' and '-'"
            )
        if any(c in rest for c in "?#") or any(p in (".", "..") for p in prefix.split("/") if p):
            raise ValueError(f"invalid prefix in {text!r}: no '?', '#', '.' or '..' parts")
        prefix = "/".join(p for p in prefix.split("/") if p)
        return S3Location(bucket=bucket, prefix=prefix)


def check_endpoint(value: str) -> str:
    """An endpoint URL ``http(s)://host[:port]``; ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"expected an endpoint URL like 'https://s3.eu-central-1.amazonaws.com' or "
            f"'http://minio:9000', got {value!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(
            f"the endpoint is scheme, host and port only (no path, query or credentials): {value!r}"
        )
    return value.rstrip("/")


def credential_secrets() -> list[str]:
    """The secret credential values in the environment (to redact from messages and logs)."""
    return [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]
