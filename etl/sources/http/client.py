"""GET requests to one API: authentication (bearer, basic, API key header, OAuth2 client
credentials with refresh), TLS, timeouts, a request-rate limit, bounded retries of 429 and 5xx,
and URLs that are safe to show (no secret query values, no project secrets)."""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from etl.errors import DataError, SourceError
from etl.redact import redact
from etl.sources.http.spec import HttpSpec

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, query string and all: keep it quiet
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

#: query parameter names whose values are never shown (and names ending in one of the suffixes)
SECRET_PARAMS = frozenset(
    {"token", "access_token", "key", "api_key", "apikey", "secret", "password", "passwd"}
    | {"sig", "signature", "auth", "code", "session", "client_secret"}
)
SECRET_SUFFIXES = ("_token", "-token", "_key", "-key", "secret", "password")


def secret_param(name: str) -> bool:
    """Whether a query parameter's value is a secret by its name (OData's ``$skiptoken`` is not)."""
    lower = name.lower()
    return lower in SECRET_PARAMS or lower.endswith(SECRET_SUFFIXES)


def safe_url(url: str | httpx.URL, secrets: list[str]) -> str:
    """``url`` with the values of secret-looking query parameters as ``***`` and every project
    secret redacted."""
    parts = urlsplit(str(url))
    query = [
        (k, "***" if secret_param(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host  # never user:password@
    shown = urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="$:',()/")))
    return redact(shown, secrets)


class Client:
    """One connector's HTTP session (GET only, plus OAuth2's token request)."""

    def __init__(self, name: str, spec: HttpSpec, secrets: list[str], root: Any = None) -> None:
        self.name, self.spec, self.secrets = name, spec, secrets
        verify: Any = spec.verify
        if spec.verify and spec.ca_bundle:
            bundle = spec.ca_bundle
            if root is not None and not bundle.startswith("/"):
                bundle = str(root / bundle)
            import ssl

            verify = ssl.create_default_context(cafile=bundle)
        headers = {"Accept": "application/json", **spec.headers}
        auth = spec.auth
        basic = None
        if auth.type == "bearer" and auth.token is not None:
            headers["Authorization"] = f"Bearer {auth.token.get_secret_value()}"
        elif auth.type == "api_key" and auth.api_key is not None:
            headers[auth.header] = auth.api_key.get_secret_value()
        elif auth.type == "basic" and auth.password is not None:
            basic = httpx.BasicAuth(auth.user or "", auth.password.get_secret_value())
        self.http = httpx.Client(
            base_url=spec.base_url + "/",
            headers=headers,
            auth=basic,
            verify=verify,
            timeout=spec.timeout.total_seconds(),
            follow_redirects=True,
        )
        self.token: str | None = None
        self.token_expires = 0.0
        self.last_request = 0.0
        self.requests: list[str] = []  # the URLs sent, safe to show

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    @property
    def where(self) -> str:
        """The connector file, for messages."""
        return f"connectors/{self.name}.yaml"

    def get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """GET ``url`` (relative to the base URL, or absolute); retries 429/5xx/transport errors
        with a bounded backoff; SourceError for what stays wrong (401/403: credentials)."""
        attempt = 0
        refreshed = False
        while True:
            self._pace()
            headers = self._oauth_header()
            target = url if "://" in url else url.lstrip("/")
            try:
                response = self.http.get(target, params=params, headers=headers)
            except httpx.TransportError as exc:
                request = self.http.build_request("GET", target, params=params)
                shown = safe_url(request.url, self.secrets)
                if attempt >= self.spec.retries:
                    raise SourceError(
                        f"{self.where}: GET {shown}: {type(exc).__name__}: "
                        f"{redact(str(exc) or 'no answer', self.secrets)} (after {attempt + 1} tries)",
                        hint="check base_url, the network, and 'timeout'",
                    ) from None
                self._backoff(attempt, None, shown, type(exc).__name__)
                attempt += 1
                continue
            shown = safe_url(response.request.url, self.secrets)
            self.requests.append(shown)
            status = response.status_code
            if status == 401 and self.spec.auth.type == "oauth2" and not refreshed:
                self.token = None  # expired before its time: one new token, one more try
                refreshed = True
                continue
            if status in (401, 403):
                raise SourceError(
                    f"{self.where}: GET {shown}: HTTP {status} "
                    f"{'unauthorized' if status == 401 else 'forbidden'}: the API refused the "
                    "credentials or their permissions",
                    hint="check the auth section and the ${ENV} variables it reads",
                )
            if status == 429 or status >= 500:
                if attempt >= self.spec.retries:
                    raise SourceError(
                        f"{self.where}: GET {shown}: HTTP {status} after {attempt + 1} tries",
                        hint="the API is overloaded or down; the next run tries again",
                    )
                self._backoff(attempt, response.headers.get("Retry-After"), shown, f"HTTP {status}")
                attempt += 1
                continue
            if status >= 400:
                raise SourceError(f"{self.where}: GET {shown}: HTTP {status}")
            return response

    def json(self, response: httpx.Response) -> Any:
        """The body as JSON, or a DataError naming the page's URL."""
        try:
            return response.json()
        except ValueError:
            shown = safe_url(response.request.url, self.secrets)
            kind = response.headers.get("Content-Type", "no content type")
            raise DataError(
                f"{self.where}: GET {shown}: the page is not JSON ({kind}, "
                f"{len(response.content)} bytes); nothing was committed"
            ) from None

    def _pace(self) -> None:
        if self.spec.rate_limit is None:
            return
        wait = self.last_request + 1 / self.spec.rate_limit - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_request = time.monotonic()

    def _backoff(self, attempt: int, retry_after: str | None, shown: str, why: str) -> None:
        delay = min(0.25 * 2**attempt, self.spec.max_wait.total_seconds())
        if retry_after:
            delay = self._retry_after(retry_after, delay)
        log.warning("%s: GET %s: %s, retrying in %.1fs", self.name, shown, why, delay)
        time.sleep(delay)

    def _retry_after(self, value: str, default: float) -> float:
        cap = self.spec.max_wait.total_seconds()
        try:
            return min(max(float(value), 0.0), cap)
        except ValueError:
            pass
        try:
            at = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return min(max(at.timestamp() - time.time(), 0.0), cap)

    def _oauth_header(self) -> dict[str, str]:
        auth = self.spec.auth
        if auth.type != "oauth2":
            return {}
        if self.token is None or time.monotonic() >= self.token_expires:
            self._fetch_token()
        return {"Authorization": f"Bearer {self.token}"}

    def _fetch_token(self) -> None:
        """OAuth2 client credentials: POST to the token URL (the one request that is not a GET;
        it reads nothing from the plant)."""
        auth = self.spec.auth
        assert auth.token_url is not None and auth.client_secret is not None
        data = {"grant_type": "client_credentials"}
        if auth.scope:
            data["scope"] = auth.scope
        shown = safe_url(auth.token_url, self.secrets)
        try:
            response = self.http.post(
                auth.token_url,
                data=data,
                auth=httpx.BasicAuth(auth.client_id or "", auth.client_secret.get_secret_value()),
            )
        except httpx.TransportError as exc:
            raise SourceError(
                f"{self.where}: token request to {shown}: {type(exc).__name__}"
            ) from None
        if response.status_code in (400, 401, 403):
            raise SourceError(
                f"{self.where}: token request to {shown}: HTTP {response.status_code}: the token "
                "server refused the client credentials",
                hint="check auth.client_id and auth.client_secret (and its ${ENV} variable)",
            )
        if response.status_code >= 300:
            raise SourceError(
                f"{self.where}: token request to {shown}: HTTP {response.status_code}"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise SourceError(
                f"{self.where}: token request to {shown}: no access_token in the answer"
            ) from None
        self.secrets.append(token)
        self.token = token
        lifetime = float(body.get("expires_in", 3600))
        self.token_expires = time.monotonic() + max(lifetime - 30, lifetime / 2)
