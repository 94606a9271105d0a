"""The HTTP API Reader: one endpoint per source table, its pages followed in the declared style
(offset/limit, page number, a next link in the body, the ``Link`` header, a cursor, OData v4's
``@odata.nextLink`` and v2's ``__next``), the records at a dotted path, columns as dotted paths
into a record, the window as declared query parameters, ``hi`` from the server's ``Date``.

Every page is parsed before the run maps anything of it; a page that is not what the endpoint
declares is a DataError naming its URL (without secret query values): nothing is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pandas as pd

from etl.config.models import ConnectorSpec, MappingSpec
from etl.errors import ConfigError, DataError
from etl.sources.http.client import Client, safe_url
from etl.sources.http.spec import Endpoint
from etl.sources.reader import WINDOW_MARGIN, Shape, Window
from etl.sources.rows import apply_filters, instants, time_columns, utc_text, wanted_columns

log = logging.getLogger(__name__)


def endpoint_for(connector: str, spec: ConnectorSpec, mapping: MappingSpec, where: str) -> Endpoint:
    """The connector's endpoint of the table the mapping reads, or a ConfigError."""
    assert spec.http is not None
    table = mapping.source.table
    if table is None:
        raise ConfigError(
            f"{where}: source.query: an HTTP connector ({connector}) reads endpoints: name one "
            "with 'source: {table: NAME}' and list it under the connector's 'endpoints'"
        )
    if table not in spec.http.endpoints:
        raise ConfigError(
            f"connectors/{connector}.yaml: http.endpoints: no entry {table!r} (the table "
            f"{where} reads; endpoints: {', '.join(spec.http.endpoints)})"
        )
    return spec.http.endpoints[table]


def dotted(value: Any, path: str | None) -> Any:
    """``value`` at the dotted ``path`` (None: ``value`` itself); None where a step is missing."""
    if path is None:
        return value
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


class HttpReader:
    """A job's rows from an HTTP API (see the module docstring)."""

    def __init__(
        self,
        connector: str,
        spec: ConnectorSpec,
        mapping: MappingSpec,
        where: str,
        root: Path,
        secrets: list[str],
    ) -> None:
        assert spec.http is not None
        self.connector, self.spec, self.mapping, self.where = connector, spec, mapping, where
        self.endpoint = endpoint_for(connector, spec, mapping, where)
        self.root, self.secrets = root, list(secrets)
        self.client: Client | None = None
        self.sent: list[str] = []

    def described(self) -> list[str]:
        """The requests the last read sent (for ``etl preview``), secrets hidden."""
        window = self.endpoint.window
        lines = [f"GET {u}" for u in self.sent] or ["no request sent"]
        if window.from_param is None and window.odata_filter is None:
            lines.append(
                "the endpoint has no time filter: every page is read and the page order decides "
                "what the window holds"
            )
        return lines

    @contextmanager
    def open(self) -> Iterator[HttpReading]:
        """A session with the API (nothing is sent before the clock or the rows are asked for)."""
        assert self.spec.http is not None
        client = Client(self.connector, self.spec.http, self.secrets, self.root)
        self.client = client
        try:
            yield HttpReading(self, client)
        finally:
            self.sent = list(client.requests)
            client.close()


class HttpReading:
    """The API opened for one run."""

    instants: frozenset[str] = frozenset()

    def __init__(self, reader: HttpReader, client: Client) -> None:
        self.reader, self.client = reader, client

    def now_utc(self) -> datetime:
        """The server's clock from the ``Date`` header of a first request (its first page,
        smallest size), else ours."""
        endpoint = self.reader.endpoint
        params = {**endpoint.params, **Pager(endpoint, None).first_params(size=1)}
        response = self.client.get(endpoint.path, params)
        stamp = response.headers.get("Date")
        if stamp:
            try:
                return parsedate_to_datetime(stamp).astimezone(UTC)
            except (TypeError, ValueError):
                pass
        log.warning(
            "%s: no Date header from the API: the window ends by this machine's clock",
            self.reader.connector,
        )
        return datetime.now(UTC)

    def request(self, reach: Window, shape: Shape) -> HttpRequest:
        """The pages of the endpoint for ``reach`` (widened like a SQL window by the margin)."""
        return HttpRequest(self, reach)


class Pager:
    """The query parameters of each page and the way to the next one, by paging style."""

    def __init__(self, endpoint: Endpoint, odata: int | None) -> None:
        self.endpoint, self.paging = endpoint, endpoint.paging
        self.style = (
            "odata" if endpoint.odata and self.paging.style == "none" else self.paging.style
        )

    def first_params(self, size: int | None = None) -> dict[str, Any]:
        """The paging parameters of the first page."""
        p, size = self.paging, size or self.paging.size
        if self.style == "offset":
            return {p.offset_param: 0, p.limit_param: size}
        if self.style == "page":
            return {p.page_param: p.first_page, **({p.size_param: size} if p.size_param else {})}
        if self.style in ("cursor", "next_link", "link_header"):
            return {p.size_param: size} if p.size_param else {}
        if self.style == "odata":
            return {"$top": size}
        return {}


class HttpRequest:
    """The pages of one run, fetched when iterated."""

    def __init__(self, reading: HttpReading, reach: Window | None) -> None:
        self.reading, self.reach = reading, reach  # None: every page (``etl discover``'s sample)

    def window_params(self) -> dict[str, Any]:
        """The window as the endpoint declares it goes out."""
        if self.reach is None:
            return {}
        w = self.reading.reader.endpoint.window
        lo, hi = self.reach.lo - WINDOW_MARGIN, self.reach.hi + WINDOW_MARGIN
        params: dict[str, Any] = {}
        if w.from_param:
            params[w.from_param] = utc_text(lo, w.format)
        if w.to_param:
            params[w.to_param] = utc_text(hi, w.format)
        if w.odata_filter:
            params["$filter"] = odata_filter(
                w.odata_filter, lo, hi, self.reading.reader.endpoint.odata
            )
        return params

    def batches(self, size: int) -> Iterator[pd.DataFrame]:
        """The records of every page as frames of the mapping's columns."""
        reader = self.reading.reader
        mapping = reader.mapping
        wanted, times = wanted_columns(mapping), time_columns(mapping)
        pending: list[pd.DataFrame] = []
        held = 0
        for records, url in self.pages():
            frame = records_frame(records, wanted, url, reader.where)
            for column in times:
                frame[column] = instants(frame[column], reader.endpoint.epoch)
            frame = apply_filters(frame, mapping.filters)
            pending.append(frame)
            held += len(frame)
            if held >= size:
                yield pd.concat(pending, ignore_index=True)
                pending, held = [], 0
        if pending:
            yield pd.concat(pending, ignore_index=True)

    def pages(self) -> Iterator[tuple[list[Any], str]]:
        """(records, safe URL) of each page, following the endpoint's paging to its end."""
        reader, client = self.reading.reader, self.reading.client
        endpoint = reader.endpoint
        pager = Pager(endpoint, endpoint.odata)
        paging = endpoint.paging
        params: dict[str, Any] | None = {
            **endpoint.params,
            **self.window_params(),
            **pager.first_params(),
        }
        url: str = endpoint.path
        seen: set[str] = set()
        offset, page = 0, paging.first_page
        for count in range(endpoint.max_pages + 1):
            if count == endpoint.max_pages:
                raise DataError(
                    f"{client.where}: endpoint {endpoint.path}: more than max_pages "
                    f"{endpoint.max_pages} pages; nothing was committed",
                    hint="raise max_pages, or narrow the window (reread, start_from)",
                )
            response = client.get(url, params)
            shown = safe_url(response.request.url, client.secrets)
            body = client.json(response)
            records = dotted(body, endpoint.records_path)
            if not isinstance(records, list):
                where = f"at {endpoint.records_path!r}" if endpoint.records_path else "as the body"
                raise DataError(
                    f"{client.where}: GET {shown}: no list of records {where} "
                    f"(got {type(records).__name__}); nothing was committed",
                    hint="check the endpoint's 'records' path (or 'odata': 2 or 4)",
                )
            bad = next((r for r in records if not isinstance(r, dict)), None)
            if bad is not None:
                raise DataError(
                    f"{client.where}: GET {shown}: a record is not an object ({type(bad).__name__}); nothing was committed"
                )
            yield records, shown
            style = pager.style
            following: str | None = None
            # offset and page numbers end at the first empty page: a server that caps the page
            # size below what was asked would make a short page look like the last one
            if style == "offset":
                if not records:
                    return
                offset += len(records)
                params = {**(params or {}), paging.offset_param: offset}
                continue
            if style == "page":
                if not records:
                    return
                page += 1
                params = {**(params or {}), paging.page_param: page}
                continue
            if style == "cursor":
                cursor = dotted(body, paging.cursor)
                if cursor in (None, ""):
                    return
                key = str(cursor)
                if key in seen:
                    raise DataError(
                        f"{client.where}: GET {shown}: the cursor {key!r} came back again: the API would page forever; nothing was committed"
                    )
                seen.add(key)
                params = {**(params or {}), paging.cursor_param: cursor}
                continue
            if style == "next_link":
                following = dotted(body, paging.next)
            elif style == "link_header":
                following = response.links.get("next", {}).get("url")
            elif style == "odata":
                following = (
                    dotted(body, "d.__next")
                    if endpoint.odata == 2
                    else body.get("@odata.nextLink")  # one key, dots and all
                )
            else:
                return
            if not following:
                return
            absolute = urljoin(str(response.url), str(following))
            if absolute in seen:
                raise DataError(
                    f"{client.where}: GET {shown}: the next link {safe_url(absolute, client.secrets)} came back again: the API would page forever; nothing was committed"
                )
            seen.add(absolute)
            url, params = absolute, None  # the link carries its own query


def odata_filter(field: str, lo: datetime, hi: datetime, version: int | None) -> str:
    """``$filter`` of a timestamp field in ``[lo, hi)``: v4 literals, v2 ``datetimeoffset'...'``."""

    def literal(value: datetime) -> str:
        text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"datetimeoffset'{text}'" if version == 2 else text

    return f"{field} ge {literal(lo)} and {field} lt {literal(hi)}"


def records_frame(
    records: list[dict[str, Any]], wanted: list[str], url: str, where: str
) -> pd.DataFrame:
    """The records as a frame of the ``wanted`` dotted columns (a column no record has is a
    DataError naming the page, unless the page is empty)."""
    if not records:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in wanted})
    frame = flat_records(records)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: GET {url}: field(s) {', '.join(map(repr, missing))} in no record of the "
            f"page (fields: {', '.join(map(str, frame.columns[:30]))}); nothing was committed",
            hint="columns are dotted paths into a record, e.g. 'machine.code'",
        )
    return frame[wanted]


def flat_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records as a frame with a dotted column per nested field: through Arrow (no Python call
    per value) unless a field changes its type between records, then through pandas."""
    import pyarrow as pa

    try:
        # pa.array infers one struct type over every record (from_pylist: the first one's keys)
        table = pa.Table.from_struct_array(pa.array(records))
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()
        return table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pd.json_normalize(records, sep=".")
