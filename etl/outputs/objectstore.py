"""Object storage for the Parquet dataset: ``s3://bucket/prefix`` on any S3-compatible service
(AWS S3, MinIO, Ceph RGW, ...) through pyarrow's ``S3FileSystem``.

Credentials come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
optionally ``AWS_SESSION_TOKEN``; without them the AWS default chain: ``~/.aws`` files, an
instance profile). They are never written into a config file, printed or logged.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from pyarrow import fs

from etl.config.locations import credential_secrets
from etl.redact import redact


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


def s3_error(exc: OSError) -> str:
    """pyarrow's S3 error, first line, without credentials."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(text, credential_secrets())
