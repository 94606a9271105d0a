"""``kind: http`` connectors: the base URL, authentication, TLS, limits, and one endpoint per
source table (the ``source.table`` a mapping names)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from etl.sources.base import Duration, Section


class Auth(Section):
    """How requests authenticate; every secret comes from ``${ENV}``."""

    type: Literal["none", "bearer", "basic", "api_key", "oauth2"] = "none"
    token: SecretStr | None = None  # bearer
    user: str | None = None  # basic
    password: SecretStr | None = None  # basic
    header: str = "X-API-Key"  # api_key
    api_key: SecretStr | None = None  # api_key
    token_url: str | None = None  # oauth2 client credentials
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        needs = {
            "bearer": ("token",),
            "basic": ("user", "password"),
            "api_key": ("api_key",),
            "oauth2": ("token_url", "client_id", "client_secret"),
        }.get(self.type, ())
        for key in needs:
            if getattr(self, key) is None:
                raise ValueError(f"@{key}: missing: auth type {self.type} needs '{key}'")
        return self


class Paging(Section):
    """How the endpoint pages (declared, never guessed)."""

    style: Literal["none", "offset", "page", "next_link", "link_header", "cursor", "odata"] = "none"
    size: int = Field(default=1000, ge=1, le=1_000_000)  # records asked for per page
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_param: str = "page"
    first_page: int = 1
    size_param: str | None = None  # page style: the page-size parameter (None: not sent)
    next: str = "next"  # next_link: dotted path of the next URL in the body
    cursor: str = "next_cursor"  # cursor: dotted path of the next cursor in the body
    cursor_param: str = "cursor"


class WindowParams(Section):
    """How the run's window goes out as query parameters (None of them: the API has no time
    filter, every page is read and the run cuts the window)."""

    from_param: str | None = Field(default=None, alias="from")  # e.g. from, updated_since
    to_param: str | None = Field(default=None, alias="to")
    odata_filter: str | None = None  # OData: the timestamp field of a $filter ... ge ... and ... lt
    format: Literal["iso", "epoch_s", "epoch_ms"] = "iso"


class Endpoint(Section):
    """One endpoint: its path, where its records sit, how it pages and filters by time."""

    path: str
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict
    )  # fixed query parameters
    records: str | None = None  # dotted path of the record list (None: the body is the list)
    odata: Literal[2, 4] | None = None  # an OData service: records, paging and dates follow it
    paging: Paging = Paging()
    window: WindowParams = WindowParams()
    max_pages: int = Field(default=10_000, ge=1)
    epoch: Literal["s", "ms"] | None = None  # numeric timestamps (None: ms when > 1e11, else s)

    @property
    def records_path(self) -> str | None:
        """The dotted path of the records, OData's own when the endpoint is an OData service."""
        if self.records is not None:
            return self.records
        return {2: "d.results", 4: "value"}.get(self.odata or 0)


class HttpSpec(Section):
    """``http:`` of a ``kind: http`` connector."""

    base_url: str
    auth: Auth = Auth()
    verify: bool = True  # TLS certificate verification (leave on)
    ca_bundle: str | None = None  # a CA file for a private certificate authority
    timeout: Duration = timedelta(seconds=30)
    rate_limit: float | None = Field(default=None, gt=0)  # requests per second at most
    retries: int = Field(default=4, ge=0, le=20)  # for 429, 5xx and transport errors
    max_wait: Duration = timedelta(seconds=60)  # the longest Retry-After honoured
    headers: dict[str, str] = Field(default_factory=dict)
    endpoints: dict[str, Endpoint] = Field(min_length=1)

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected an http(s) URL like 'https://mes.example/api', got {value!r}"
            )
        if parts.username or parts.password or parts.query:
            raise ValueError("no credentials or query in base_url: put them under 'auth'")
        return value.rstrip("/")

    def secrets(self) -> list[SecretStr | None]:
        """Every secret of the section (to redact from messages and logs)."""
        a = self.auth
        return [a.token, a.password, a.api_key, a.client_secret]
