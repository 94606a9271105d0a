"""``kind: files`` connectors: where the exports are dropped and how each table's files read."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from etl.sources.base import Duration, Section


class S3Drop(Section):
    """The object store of an ``s3://`` location (credentials from the environment only)."""

    endpoint: str
    region: str = "us-east-1"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        from etl.config.locations import check_endpoint

        return check_endpoint(value)


class FileTable(Section):
    """The files of one source table (the ``source.table`` a mapping names) and how they read."""

    glob: str
    format: Literal["csv", "xlsx", "xls", "jsonl"] | None = (
        None  # None: from the file name's suffix
    )
    # CSV/TSV
    delimiter: str | None = None  # None: ',' ('\t' for *.tsv)
    quote: str = '"'
    encoding: str = "utf-8"  # a UTF-8 byte-order mark is skipped whatever is declared
    decimal: Literal[".", ","] = "."
    skip_rows: int = Field(default=0, ge=0, le=1000)  # title lines above the header
    footer_rows: int = Field(default=0, ge=0, le=1000)  # totals lines below the data
    # Excel
    sheet: str | int = 0  # a sheet name or its position (0: the first)
    header_row: int = Field(default=1, ge=1, le=1000)
    # every kind: the text form of the mapping's timestamp columns (None: ISO 8601 or typed)
    datetime_format: str | list[str] | None = None  # several: each tried on what is left

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"expected one character, got {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, cp1252, latin-1)") from None
        return value

    def format_of(self, name: str) -> str:
        """The format of file ``name``: the declared one, else by its suffix (csv by default)."""
        if self.format is not None:
            return self.format
        lower = name.lower()
        if lower.endswith((".xlsx", ".xlsm")):
            return "xlsx"
        if lower.endswith(".xls"):
            return "xls"
        if lower.endswith((".jsonl", ".ndjson")):
            return "jsonl"
        return "csv"

    def delimiter_of(self, name: str) -> str:
        """The declared delimiter, else a tab for ``*.tsv`` and a comma otherwise."""
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if name.lower().endswith(".tsv") else ","


class FilesSpec(Section):
    """``files:`` of a ``kind: files`` connector."""

    location: str  # a folder (relative to the project) or s3://bucket/prefix
    s3: S3Drop | None = None
    # a file is read once it has not changed for this long (it may still be being copied)
    settle: Duration = timedelta(seconds=30)
    marker: str | None = None  # read 'x.csv' only once 'x.csv<marker>' exists (e.g. '.done')
    # a file an earlier run read that is gone from the drop: 'keep' leaves the runs it
    # delivered as stored; 'forget' removes them (wherever they lie); 'error' stops a run
    # whose window its rows lie in (nothing committed)
    missing: Literal["keep", "forget", "error"] = "keep"
    tables: dict[str, FileTable] = Field(min_length=1)

    @model_validator(mode="after")
    def _where(self) -> FilesSpec:
        from etl.config.locations import S3Location

        try:
            location = S3Location.parse(self.location)
        except ValueError as exc:
            raise ValueError(f"@location: {exc}") from None
        if location is not None and self.s3 is None:
            raise ValueError(
                f"@s3: missing: {location.uri} needs 's3' with the 'endpoint' of the object store"
            )
        if location is None and self.s3 is not None:
            raise ValueError("@s3: 's3' goes with 'location: s3://bucket/prefix'")
        return self
