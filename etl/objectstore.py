"""Object storage for the Parquet dataset: ``s3://bucket/prefix`` on any S3-compatible service
(AWS S3, MinIO, Ceph RGW, ...) through pyarrow's ``S3FileSystem``.

Credentials come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
optionally ``AWS_SESSION_TOKEN``; without them the AWS default chain: ``~/.aws`` files, an
instance profile). They are never written into a config file, printed or logged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pyarrow import fs

from .redact import redact

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


def s3_filesystem(*, region: str, endpoint: str) -> fs.S3FileSystem:
    """A pyarrow S3FileSystem for ``endpoint``, with credentials from the environment."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    keys: dict[str, str] = {}
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        keys = {
            "access_key": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        if os.environ.get("AWS_SESSION_TOKEN"):
            keys["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return fs.S3FileSystem(
        region=region,
        scheme=parts.scheme,
        endpoint_override=netloc,
        connect_timeout=10,
        request_timeout=60,
        **keys,
    )


def credential_secrets() -> list[str]:
    """The secret credential values in the environment (to redact from messages and logs)."""
    return [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]


def s3_error(exc: OSError) -> str:
    """pyarrow's S3 error, first line, without credentials."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(text, credential_secrets())
