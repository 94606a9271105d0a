"""One exception root, split by what the caller should do; each class carries its exit code.

Exit codes (documented in docs/operations.md):

====  =====================================================================
0     success
1     unexpected internal error (a bug: please report it with the log)
2     usage or configuration error: fix the command line or the YAML files
3     source unreachable (connection refused, timeout, authentication)
4     data error: the source does not look like the mapping says (also ``etl check``)
5     state conflict: another run holds the job's lock
6     store or output error (store database, Parquet target, full disk; a failed publication)
7     ``etl check --strict``: the source account can write
8     data error: a run found more anomalies than the job's ``max_anomalies``
9     ``etl status --check``: a scheduled job is stale, its last run failed, or its files are broken
====  =====================================================================
"""

from __future__ import annotations


class EtlError(Exception):
    """Root of every error booking-etl raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(EtlError):
    """A project, connector, mapping or job file is wrong. Lists every problem found."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, *, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems), hint=hint)


class UsageError(EtlError):
    """The command line asks for something that does not exist or makes no sense."""

    exit_code = 2


class SourceError(EtlError):
    """The source database cannot be reached or refused the query. Retrying later may help."""

    exit_code = 3


class DataError(EtlError):
    """The source answered, but its data does not fit the mapping (missing column, bad type)."""

    exit_code = 4


class LockHeldError(EtlError):
    """Another process is running the same job."""

    exit_code = 5


class LockLost(LockHeldError):
    """This run's lease ran out (the store was unreachable for longer than ``lock.lease``) or
    another run took the lock over while this one was still running. The message says whether
    the run committed before it stopped."""


class StoreError(EtlError):
    """The store or the Parquet output could not be written (database down, disk full)."""

    exit_code = 6


class AccountCanWrite(EtlError):
    """``etl check --strict``: the connector's account holds privileges that let it write."""

    exit_code = 7


class TooManyAnomalies(DataError):
    """A run found more anomalies than the job's ``max_anomalies``; it committed nothing."""

    exit_code = 8


class JobsUnhealthy(EtlError):
    """``etl status --check``: an enabled scheduled job is stale or its last run failed."""

    exit_code = 9


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error",
    ConfigError.exit_code: "usage or configuration error",
    SourceError.exit_code: "source unreachable or refused the query",
    DataError.exit_code: "data error: source data does not fit the mapping",
    LockHeldError.exit_code: "another run of the job holds its lock, or this run lost it",
    StoreError.exit_code: "store or output could not be written",
    AccountCanWrite.exit_code: "etl check --strict: the source account can write",
    TooManyAnomalies.exit_code: "data error: more anomalies than the job's max_anomalies",
    JobsUnhealthy.exit_code: "etl status --check: a scheduled job is stale or failed",
}
