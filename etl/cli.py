"""The ``etl`` command: parse, call the core, print; errors map to exit codes in one place."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from etl import __version__
from etl.errors import EXIT_CODES, ConfigError, EtlError, JobsUnhealthy, UsageError
from etl.ops.logs import add_secrets, json_line, json_mode, setup_logging, show_run_outcomes
from etl.redact import redact

if TYPE_CHECKING:
    from etl.config.models import Project

# Start-up: this module imports only click and the small etl modules above. Each command imports
# what it needs (config/pydantic, pandas, pyarrow, SQLAlchemy, APScheduler) inside its body, so
# `etl --help` and `etl status` do not pay for the data stack.


class EtlGroup(click.Group):
    """Turns every EtlError into one clear message on stderr and its documented exit code (one
    JSON object with ``--log-format json``; also on stdout for a command run with ``--json``)."""

    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not _wants_json_logs(argv):
            return super().main(argv, *a, **kw)
        # command-line mistakes click reports itself (unknown option, missing argument)
        try:
            return super().main(argv, *a, **{**kw, "standalone_mode": False})
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(
                json_line(
                    "error",
                    exc.format_message(),
                    kind="usage error",
                    exit_code=exc.exit_code,
                    hint="see 'etl --help'",
                ),
                err=True,
            )
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(json_line("error", "aborted", kind="aborted", exit_code=1), err=True)
            sys.exit(1)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            _fail(exc, ctx)
        except KeyboardInterrupt:
            if json_mode():
                click.echo(
                    json_line("error", "interrupted", kind="interrupted", exit_code=130), err=True
                )
            else:
                click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # the reader of stdout went away (`etl status | head -1`): stop quietly, as a shell
            # tool killed by SIGPIPE does; a run's commit is atomic, so nothing is half-written
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            secrets = ctx.meta.get("etl.secrets", [])
            message = f"internal error: {redact(f'{type(exc).__name__}: {exc}', secrets)}"
            hint = "this is a bug in booking-etl: please report it with the output of -v"
            trace = None
            if ctx.params.get("verbose"):
                import traceback

                trace = redact(traceback.format_exc(), secrets)
            _json_output(ctx, "internal error", 1, message, hint)
            if json_mode():
                fields: dict[str, Any] = {"kind": "internal error", "exit_code": 1, "hint": hint}
                if trace:
                    fields["traceback"] = trace
                click.echo(json_line("error", message, **fields), err=True)
            else:
                if trace:
                    click.echo(trace, err=True)
                click.echo(message, err=True)
                click.echo(f"  {hint}", err=True)
            sys.exit(1)


def _wants_json_logs(argv: list[str]) -> bool:
    """``--log-format json`` (or ``=json``) among the group's options, before the command."""
    for index, arg in enumerate(argv):
        if arg == "--log-format" and argv[index + 1 : index + 2] == ["json"]:
            return True
        if arg == "--log-format=json":
            return True
    return False


def _kind(exc: EtlError) -> str:
    """What went wrong, in words (the ``kind`` field of a JSON error): ``config error``,
    ``source error``, ``data error``, ``store error``, ..."""
    if isinstance(exc, ConfigError):
        return "config error"
    words = {
        "UsageError": "usage error",
        "SourceError": "source error",
        "DataError": "data error",
        "TooManyAnomalies": "too many anomalies",
        "LockHeldError": "lock held",
        "LockLost": "lock lost",
        "StoreError": "store error",
        "AccountCanWrite": "account can write",
        "JobsUnhealthy": "jobs unhealthy",
    }
    for cls in type(exc).__mro__:
        if cls.__name__ in words:
            return words[cls.__name__]
    return "error"


def _json_output(ctx: click.Context, kind: str, code: int, message: str, hint: str | None) -> None:
    """A command run with ``--json`` that fails before printing its JSON prints the error as
    JSON on stdout, so a script parsing stdout always gets JSON."""
    if ctx.meta.get("etl.json_output"):
        error = {"kind": kind, "exit_code": code, "message": message, "hint": hint}
        click.echo(json.dumps({"error": error}))


def _fail(exc: EtlError, ctx: click.Context) -> NoReturn:
    secrets: list[str] = ctx.meta.get("etl.secrets", [])
    kind = _kind(exc)
    message = redact(exc.message, secrets)
    hint = redact(exc.hint, secrets) if exc.hint else None
    _json_output(ctx, kind, exc.exit_code, message, hint)
    if json_mode():
        fields: dict[str, Any] = {"kind": kind, "exit_code": exc.exit_code, "hint": hint}
        if isinstance(exc, ConfigError):
            fields["problems"] = [redact(p, secrets) for p in exc.problems]
        fields["error"] = type(exc).__name__
        click.echo(json_line("error", message, **fields), err=True)
        sys.exit(exc.exit_code)
    kind = "config error" if isinstance(exc, ConfigError) else "error"
    lines = redact(str(exc), secrets).splitlines()
    if len(lines) > 1 and isinstance(exc, ConfigError):
        click.echo(f"{kind}: {len(exc.problems)} problem(s) found", err=True)
        for line in lines:
            click.echo(f"  {line}" if not line.startswith("  hint:") else line, err=True)
    else:
        click.echo(f"{kind}: {lines[0]}", err=True)
        for line in lines[1:]:
            click.echo(line, err=True)
    sys.exit(exc.exit_code)


def _note(level: str, text: str, **fields: Any) -> None:
    """A line of a command's own on stderr: text, or one JSON object in JSON mode."""
    if json_mode():
        click.echo(json_line(level, text, **fields), err=True)
    else:
        click.echo(text, err=True)


class Named(click.Argument):
    """A JOB or CONNECTOR argument whose absence names the project's jobs or connectors, as
    ``etl run`` without a job does (the file names; nothing is loaded or validated)."""

    def __init__(self, *args: Any, folder: str = "jobs", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.folder = folder

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.MissingParameter as exc:
            from etl.config.loader import find_root

            obj = ctx.find_root().obj or {}
            root = Path(obj.get("root") or find_root())
            names = sorted(p.stem for p in (root / self.folder).glob("*.yaml"))
            if not names:
                raise
            listed = f"{self.folder} in {root}: {', '.join(names)}"
            raise click.MissingParameter(listed, ctx=ctx, param=self) from exc


def _project(ctx: click.Context, *, partial: bool = True) -> Project:
    """The project; with ``partial`` a job whose own files are fine loads even when another
    job's files have errors (those are logged once and fail only their own job)."""
    import logging

    from etl.config.loader import find_root, load_project

    root = ctx.obj["root"] or find_root()
    project = load_project(Path(root), partial=partial)
    ctx.meta["etl.secrets"] = project.secrets
    add_secrets(project.secrets)
    if project.broken:
        logging.getLogger("etl.config.models").warning(
            "%d job(s) not loaded because their files have errors: %s ('etl validate' lists them)",
            len(project.broken),
            ", ".join(sorted(project.broken)),
            extra={"broken_jobs": sorted(project.broken)},
        )
    return project


def _ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group(cls=EtlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "-p",
    type=click.Path(file_okay=False, path_type=Path),
    help="Project directory (default: the nearest directory upwards with etl.yaml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug incl. SQL).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr as text or JSON.",
)
@click.version_option(__version__, prog_name="booking-etl")
@click.pass_context
def main(ctx: click.Context, project: Path | None, verbose: int, log_format: str) -> None:
    """booking-etl: production runs from MES/BDE/ERP booking tables, read-only and incremental."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = project
    setup_logging(verbose, log_format)


main.epilog = "\b\nExit codes:\n" + "\n".join(
    f"  {code}  {text}" for code, text in EXIT_CODES.items()
)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, force: bool) -> None:
    """Create a small commented starter project in DIRECTORY (a connector, a mapping, a job)."""
    from etl.commands.init import copy_templates

    written, kept = copy_templates(directory, force)
    click.echo(
        f"project in {directory.resolve()}: {len(written)} file(s) written, {len(kept)} kept"
    )
    for path in written:
        click.echo(f"  + {path}")
    for path in kept:
        click.echo(f"  = {path} (exists; --force overwrites)")
    click.echo(
        "next: edit connectors/plant.yaml, then 'etl check plant' and "
        "'etl discover plant' (docs/connecting.md)"
    )


@main.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check every file of the project; exit 2 listing every problem with file, line and key."""
    project = _project(ctx, partial=False)
    enabled = [name for name, job in project.jobs.items() if job.spec.enabled]
    project.require_env(enabled)
    try:
        project.require_env(None)
    except ConfigError as exc:
        for line in exc.problems:
            _note("warning", f"warning: {line} (no enabled job uses it)")
    click.echo(
        f"{project.root}: ok: {len(project.connectors)} connector(s), "
        f"{len(project.mappings)} mapping(s), {len(project.jobs)} job(s)"
    )
    for name, job in sorted(project.jobs.items()):
        flag = "" if job.spec.enabled else "  (disabled)"
        schedule = job.spec.schedule or "no schedule"
        click.echo(
            f"  {name}: {job.connector_name} ({job.connector.dialect or job.connector.kind}) -> {job.mapping_name} "
            f"({job.mapping.structure}), {schedule}{flag}"
        )


@main.command()
@click.argument("jobs", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every enabled job.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per job.")
@click.pass_context
def run(ctx: click.Context, jobs: tuple[str, ...], run_all: bool, as_json: bool) -> None:
    """Sync JOB(s) now: read the window from the source, update the store and the Parquet."""
    from etl.ops.metrics import update as update_metrics
    from etl.ops.progress import RowProgress
    from etl.pipeline.run import run_job

    ctx.meta["etl.json_output"] = as_json
    project = _project(ctx)
    show_run_outcomes()
    if run_all == bool(jobs):
        raise UsageError(
            "name one or more jobs, or pass --all", hint=f"jobs: {', '.join(sorted(project.jobs))}"
        )
    names = sorted(n for n, j in project.jobs.items() if j.spec.enabled) if run_all else list(jobs)
    for name in names:
        project.job(name)
    failure: EtlError | None = None
    if run_all:  # the jobs whose files have errors fail, the others run
        for name in sorted(project.broken):
            doc = project.files.get(f"jobs/{name}")
            if doc is not None and isinstance(doc.data, dict) and doc.data.get("enabled") is False:
                continue  # disabled (discover writes a job with placeholders so): --all skips it
            try:
                project.job(name)
            except ConfigError as exc:
                _job_failed(name, exc, project.secrets, as_json)
                failure = failure or exc
    try:
        for name in names:
            progress = None if json_mode() else RowProgress(name, sys.stderr)
            try:
                result = run_job(project, name, progress=progress)
            except EtlError as exc:
                if len(names) == 1 and failure is None:
                    raise
                _job_failed(name, exc, project.secrets, as_json)
                failure = failure or exc
                continue
            finally:
                if progress is not None:
                    progress.close()
            if as_json:
                click.echo(json.dumps(result.as_dict()))
            else:
                click.echo(result.summary())
    finally:
        update_metrics(project)
    if failure is not None:
        sys.exit(failure.exit_code)


def _job_failed(name: str, exc: EtlError, secrets: list[str], as_json: bool) -> None:
    """One failed job of several: a line on stderr (and a JSON line on stdout with --json)."""
    message = redact(exc.message, secrets)
    if as_json:
        error = {"kind": _kind(exc), "exit_code": exc.exit_code, "message": message}
        click.echo(json.dumps({"job": name, "error": error}))
    _note(
        "error",
        f"{name}: FAILED: {message}",
        job=name,
        kind=_kind(exc),
        exit_code=exc.exit_code,
        hint=redact(exc.hint, secrets) if exc.hint else None,
    )


@main.command()
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check",
    is_flag=True,
    help=f"Exit {JobsUnhealthy.exit_code} when an enabled scheduled job is stale or its last run failed.",
)
@click.pass_context
def status(ctx: click.Context, job: str | None, as_json: bool, check: bool) -> None:
    """Show per job: watermark, last run's outcome and age, next run, staleness, runs, anomalies."""
    from etl.ops.health import broken_health, job_health
    from etl.pipeline.run import publishes
    from etl.store.db import open_read_only, store_display

    ctx.meta["etl.json_output"] = as_json
    project = _project(ctx)
    if job is not None and job not in project.broken:  # a broken job's status shows its errors
        project.job(job)
    # read-only: a project whose jobs never ran has no store yet, and status does not make one
    store = open_read_only(project.spec.store, project.root, project.secrets)
    display = store_display(project.spec.store, project.root, project.secrets)
    entries: dict[str, dict[str, Any]] = {}
    if store is None:
        display += " (not created yet: no job has run)"
    else:
        from etl.sources.files.ledger import bad_files

        try:
            entries = {e["job"]: e for e in store.summary()}
            for name, files in bad_files(store).items():
                if name in entries:
                    entries[name]["bad_files"] = files
        finally:
            store.close()
    names = [job] if job else sorted(set(project.jobs) | set(entries) | set(project.broken))
    rows = []
    for name in names:
        entry = entries.get(
            name,
            {
                "job": name,
                "watermark": None,
                "running": False,
                "runs": 0,
                "open_runs": 0,
                "anomalies": {},
                "last_run": None,
            },
        )
        entry["configured"] = name in project.jobs or name in project.broken
        entry["config_errors"] = project.broken.get(name, [])
        if name not in project.jobs or not publishes(project, project.jobs[name]):
            entry["publish_pending"] = []  # months a job without Parquet never publishes
        rows.append(entry)
    now = datetime.now(UTC)
    health = {
        e["job"]: job_health(project.jobs[e["job"]], e, now)
        if e["job"] in project.jobs
        else broken_health(e["job"], e["config_errors"], e)
        for e in rows
        if e["configured"]
    }
    unhealthy = [h for h in health.values() if not h.healthy]
    if as_json:
        for entry in rows:
            entry.update(health[entry["job"]].as_dict() if entry["configured"] else {})
        click.echo(json.dumps(rows, default=_json_default, indent=2))
        ctx.meta["etl.json_output"] = False  # printed: --check's verdict goes to stderr only
    else:
        _print_status(display, rows, health, now)
    if check and unhealthy:
        raise JobsUnhealthy(
            f"{len(unhealthy)} scheduled job(s) need attention: "
            + "; ".join(f"{h.job}: {', '.join(h.problems)}" for h in unhealthy)
        )


def _print_status(
    store: str, rows: list[dict[str, Any]], health: dict[str, Any], now: datetime
) -> None:
    from etl.ops.health import age

    click.echo(f"store: {store}")
    for entry in rows:
        last = entry["last_run"]
        outcome = "never run"
        if last:
            ended = last["finished_at"] or last["started_at"]
            outcome = f"last run {last['status']} at {_ts(ended)} ({age(now - ended)} ago)"
            if last["status"] != "ok" and last.get("error"):
                outcome += f": {last['error']}"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(entry["anomalies"].items())) or "none"
        note = "" if entry["configured"] else "  (no longer configured)"
        click.echo(f"{entry['job']}{note}: {outcome}{'  [running]' if entry['running'] else ''}")
        for problem in entry.get("config_errors") or []:
            click.echo(f"  CONFIG ERROR, the job cannot run: {problem}")
        click.echo(
            f"  watermark {_ts(entry['watermark'])}; {entry['runs']} runs stored "
            f"({entry['open_runs']} open); anomalies: {kinds}"
        )
        for bad in entry.get("bad_files") or []:
            click.echo(
                f"  BAD FILE {bad['path']} (since {bad['since']}, skipped by every run until it "
                f"changes; its runs stay as stored): {bad['error']}"
            )
        pending = entry.get("publish_pending") or []
        if pending and not entry["running"]:
            click.echo(
                f"  Parquet NOT published for {len(pending)} month(s): {', '.join(pending)} "
                "(the next run publishes them)"
            )
        state = health.get(entry["job"])
        if state is not None and state.schedule:
            when = f"next run {_ts(state.next_run)}" if state.next_run else "disabled"
            flags = "".join(
                f"; {word}" for word, on in (("STALE", state.stale), ("FAILED", state.failed)) if on
            )
            click.echo(f"  schedule '{state.schedule}' ({state.timezone}): {when}{flags}")
            for problem in state.problems:
                if problem.startswith(("last run failed", "Parquet not published", "bad file")):
                    continue  # on the first lines already
                click.echo(f"    {problem}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="etl-demo")
@click.option(
    "--fresh", is_flag=True, help="Regenerate the database and start with an empty store."
)
@click.option(
    "--flavour",
    type=click.Choice(["database", "files"]),
    default="database",
    show_default=True,
    help="Where the jobs read the plant: its database, or its tables exported as daily CSV "
    "files into DIRECTORY/drop (a file-drop connector, the same mappings).",
)
def demo(directory: Path, fresh: bool, flavour: str) -> None:
    """Create a synthetic plant database and a project wired to it in DIRECTORY, then run its jobs."""
    from etl.commands.demo import run_demo

    run_demo(directory, echo=click.echo, fresh=fresh, flavour=flavour)


_WHEN_HELP = (
    "ISO date or datetime (plant time when naive, e.g. 2026-11-01T06:00), "
    "or a duration before now (7d, 12h)"
)


@main.command()
@click.argument("job", cls=Named)
@click.option("--since", help=f"Window start instead of the next run's: {_WHEN_HELP}.")
@click.option("--until", help=f"Window end instead of source clock - safety_lag: {_WHEN_HELP}.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Runs shown in the sample table.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the derived runs as an HTML timeline to this file.",
)
@click.pass_context
def preview(
    ctx: click.Context,
    job: str,
    since: str | None,
    until: str | None,
    limit: int,
    html_file: Path | None,
) -> None:
    """Dry-run JOB: show the SQL, window, event codes, runs and anomalies; write nothing."""
    from etl.commands.preview import preview as dry_run
    from etl.commands.report import write_html

    result = dry_run(_project(ctx), job, since=since, until=until, limit=limit)
    for line in result.lines():
        click.echo(line)
    if html_file is not None:
        click.echo(f"html: {write_html(result.timeline(), html_file)}")


@main.command()
@click.argument("job", cls=Named)
@click.option("--since", help=f"Only runs and anomalies from: {_WHEN_HELP}.")
@click.option("--until", help=f"Only runs and anomalies before: {_WHEN_HELP}.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (default: report-JOB.html).",
)
@click.pass_context
def report(
    ctx: click.Context, job: str, since: str | None, until: str | None, output: Path | None
) -> None:
    """Write a self-contained HTML timeline of JOB's stored runs per machine, with anomalies."""
    from etl.commands.report import store_timeline, write_html

    timeline = store_timeline(_project(ctx), job, since=since, until=until)
    path = write_html(timeline, output or Path(f"report-{job}.html"))
    summary = timeline.summary()
    kinds = ", ".join(f"{k} {v}" for k, v in summary.anomalies.items()) or "none"
    click.echo(
        f"{path}: {summary.runs:,} runs ({summary.open_runs} open) on {summary.machines} "
        f"machines, {summary.hours:,.0f} h covered; anomalies: {kinds}"
    )


def _check_source(project: Any, connector: str, as_json: bool) -> None:
    """``etl check`` of a file-drop or HTTP connector (etl/sources/check.py)."""
    from etl.errors import DataError
    from etl.sources.check import check_source

    report = check_source(project, connector)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else "\n".join(report.lines()))
    unreadable = [t for t in report.tables if not t.readable]
    if unreadable:  # as 'etl run' would fail on them: exit 4
        raise DataError(
            f"connectors/{connector}.yaml: {len(unreadable)} mapped table(s) NOT readable: "
            + "; ".join(f"{t.mapping} ({t.source}): {t.detail}" for t in unreadable)
        )


@main.command()
@click.argument("connector", cls=Named, folder="connectors")
@click.option("--strict", is_flag=True, help="Exit 7 when the account can write.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def check(ctx: click.Context, connector: str, strict: bool, as_json: bool) -> None:
    """Connect to CONNECTOR and report server, clock, driver, privileges and least-privilege GRANTs."""
    from etl.commands.check import check_connector, format_report
    from etl.errors import AccountCanWrite, ConfigError, DataError, SourceError

    ctx.meta["etl.json_output"] = as_json
    project = _project(ctx)
    if connector in project.connectors and project.connectors[connector].kind != "sql":
        _check_source(project, connector, as_json)
        return
    report = check_connector(project, connector)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_report(report))
    ctx.meta["etl.json_output"] = False  # the report is out: its verdict goes to stderr
    if report.refused:  # as 'etl run' would refuse them: exit 2
        raise ConfigError(report.refused)
    if report.fetch_error:  # as 'etl run' would fail: exit 3
        raise SourceError(
            f"{report.where}: {report.fetch_error}",
            hint="install the driver, or set fetch: auto",
        )
    unreadable = [t for t in report.tables if t.failing]
    if unreadable:  # as 'etl run' and 'etl preview' would fail on them: exit 4
        raise DataError(
            f"{report.where}: {len(unreadable)} mapped table(s) NOT readable: "
            + "; ".join(f"{t.mapping} ({t.source}): {t.detail}" for t in unreadable),
            hint="fix the mapping or grant SELECT on the table, then run 'etl check' again",
        )
    if strict and report.can_write:
        raise AccountCanWrite(
            f"{report.where}: the account {report.account!r} can write "
            f"({len(report.writes)} privilege(s)); --strict refuses it",
            hint="give booking-etl an account with only the GRANTs listed in the report",
        )


@main.command()
@click.argument("connector", cls=Named, folder="connectors")
@click.option("--table", "-t", help="Propose a mapping (YAML on stdout) for this table or view.")
@click.option("--schema", "-s", help="The schema (owner) to look in; default: the account's.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the table listing as JSON (not with --table)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --table: write the mapping to this new file instead of stdout.",
)
@click.option(
    "--job",
    "job_name",
    help="With --table: write mappings/NAME.yaml and jobs/NAME.yaml, then show what "
    "'etl preview NAME' shows.",
)
@click.pass_context
def discover(
    ctx: click.Context,
    connector: str,
    table: str | None,
    schema: str | None,
    as_json: bool,
    output: Path | None,
    job_name: str | None,
) -> None:
    """List CONNECTOR's tables (rows, columns), or propose a mapping for one with --table."""
    from etl.commands.discover import format_listing, list_tables, propose, write_job

    if output is not None and (table is None or output.exists()):
        raise UsageError(
            "--output needs --table" if table is None else f"{output} exists; not overwritten"
        )
    if job_name is not None and (table is None or output is not None):
        raise UsageError("--job needs --table (and writes its own files: no --output)")
    if as_json and table is not None:  # the proposal is YAML with comments: never a silent mix
        raise UsageError(
            "--json prints the table listing: not with --table (the proposed mapping is YAML)",
            hint="leave out --json, or write the proposal to a file with -o FILE",
        )
    ctx.meta["etl.json_output"] = as_json and table is None
    project = _project(ctx)
    if job_name is not None:
        from etl.commands.preview import preview as dry_run
        from etl.config.loader import load_project

        assert table is not None
        mapping, job = write_job(project, connector, table, job_name, schema)
        click.echo(f"wrote {mapping} and {job}")
        written = load_project(project.root, partial=True)
        if job_name in written.broken:  # a placeholder discover could not fill: no preview
            for line in written.broken[job_name]:
                click.echo(f"  {line}")
            click.echo(
                f"next: name the placeholders in {mapping.name}, set 'enabled: true' in "
                f"{job.name} (written disabled), then 'etl preview {job_name}'"
            )
            return
        click.echo(f"$ etl preview {job_name}")
        for line in dry_run(written, job_name).lines():
            click.echo(line)
        click.echo(f"next: edit {mapping.name} where a line is wrong, then 'etl run {job_name}'")
        return
    if table is None:
        listing = list_tables(project, connector, schema)
        click.echo(json.dumps(listing.as_dict(), indent=2) if as_json else format_listing(listing))
        return
    command = f"etl discover {connector} --table {table}"
    command += f" --schema {schema}" if schema else ""
    text = propose(project, connector, table, schema).yaml(command)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    click.echo(f"wrote {output}: review it, then 'etl preview' a job that uses it")


@main.command()
@click.argument("job", cls=Named)
@click.option(
    "--since",
    required=True,
    help="Start: ISO date/datetime (plant time) or a duration before now (90d).",
)
@click.option("--until", help="End (default: the source clock minus the job's safety lag).")
@click.option(
    "--chunk", default="7d", show_default=True, help="Chunk length; each chunk commits on its own."
)
@click.option(
    "--restart",
    is_flag=True,
    help="Ignore an interrupted backfill of the same range and start over.",
)
@click.pass_context
def backfill(
    ctx: click.Context, job: str, since: str, until: str | None, chunk: str, restart: bool
) -> None:
    """Re-derive JOB's runs from --since to --until chunk by chunk (resumable; the watermark never moves back)."""
    from etl.config.durations import parse_duration
    from etl.ops.metrics import update as update_metrics
    from etl.pipeline.backfill import backfill as run_backfill

    project = _project(ctx)
    try:
        length = parse_duration(chunk)
    except ValueError as exc:
        raise UsageError(f"--chunk: {exc}") from None

    count = [0]

    def progress(piece: Any, total: int) -> None:
        count[0] += 1
        _note(
            "info",
            f"  chunk {count[0]}/{total} {_ts(piece.lo)} .. {_ts(piece.hi)}: "
            f"{piece.rows_read:,} rows read, {piece.runs:,} runs",
            job=job,
            chunk=count[0],
            chunks=total,
            rows_read=piece.rows_read,
            runs=piece.runs,
        )

    try:
        result = run_backfill(
            project, job, since, until, length, restart=restart, progress=progress
        )
    finally:
        update_metrics(project)
    click.echo(result.summary())


@main.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Jobs that may run at the same time (default: scheduler.workers in etl.yaml, 2).",
)
@click.option(
    "--grace",
    help="After SIGTERM/SIGINT, how long running syncs may take before they are abandoned "
    "(default: scheduler.grace in etl.yaml, 60s).",
)
@click.pass_context
def schedule(ctx: click.Context, workers: int | None, grace: str | None) -> None:
    """Run every enabled job with a cron schedule until SIGTERM (SIGHUP reloads the project)."""
    from etl.config.durations import parse_duration
    from etl.ops.schedule import Daemon

    project = _project(ctx)
    options = ctx.find_root().params
    setup_logging(max(1, options["verbose"]), options["log_format"])  # a daemon logs at INFO
    try:
        grace_period = parse_duration(grace) if grace is not None else None
    except ValueError as exc:
        raise UsageError(f"--grace: {exc}") from None
    Daemon(project, workers=workers, grace=grace_period).run()


@main.command()
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Append each job's output to DIR/JOB.log (relative: to the project).",
)
@click.pass_context
def cron(ctx: click.Context, log_dir: Path | None) -> None:
    """Print crontab lines that run the scheduled jobs with 'etl run' (for 'crontab -e')."""
    from etl.ops.schedule import crontab_lines, etl_executable

    for line in crontab_lines(_project(ctx), etl_executable(), log_dir):
        click.echo(line)


@main.group()
def state() -> None:
    """Reset a job's stored state ('etl status' shows it)."""


@state.command("reset")
@click.argument("job", cls=Named)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.pass_context
def state_reset(ctx: click.Context, job: str, yes: bool) -> None:
    """Forget JOB: its runs, anomalies, watermark and Parquet partitions (the audit rows stay)."""
    from etl.pipeline.backfill import reset

    project = _project(ctx)
    project.job(job)
    question = f"remove every stored run, anomaly and Parquet file of job {job!r}? the next run starts at start_from"
    try:
        confirmed = yes or click.confirm(question, default=False)
    except click.Abort:
        confirmed = False
    if not confirmed:
        raise UsageError("nothing changed (confirm, or pass --yes)")
    removed = reset(project, job)
    click.echo(
        f"{job}: state reset; {removed} run(s) removed; the next run starts at its start_from"
    )


def entry() -> NoReturn:
    """The console script (``etl``, ``python -m etl.cli``): run the command, flush the output and
    the logs, and leave without tearing the interpreter down.

    Freeing the modules of pandas, pyarrow, SQLAlchemy and the drivers one object at a time takes
    about a third of a second after the work is done, a sixth of a whole incremental ``etl run``.
    Every command has closed its store, source and files by then (Parquet files are fsynced and
    renamed, store transactions committed); a thread other than a daemon's still running (none
    should) gets the ordinary exit, which waits for it, and so does a run under a profiler or a
    coverage tracer.
    """
    import contextlib
    import logging
    import os
    import threading

    try:
        main.main(prog_name="etl")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = code if isinstance(code, int) else 0
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (etl status | head): nothing left to deliver
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    main_thread = threading.main_thread()
    busy = any(
        t.is_alive() and not t.daemon and t is not main_thread for t in threading.enumerate()
    )
    if busy or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)  # and a profiler or coverage gets to write its results
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
