"""What a config file may hand to a source: connector options and custom queries, on allowlists.

The source account's grants are the security boundary (docs/read-only.md). These checks are the
defence in depth that no config file may bypass:

- ``option_refusals``: connector options (``options:`` and the query string of ``url:``) are
  accepted only from a per-dialect list of options that cannot run SQL or change the session
  (timeouts, TLS, charset, application name, ODBC encryption keywords). ``init_command``,
  PostgreSQL ``options=-c ...``, ``autocommit``, ``client_flag``, ``local_infile``, an ODBC
  ``ReadOnly=0`` or ``ConnSettings`` are refused.
- ``query_refusals``: a custom ``source.query`` is parsed with sqlglot in the source's dialect and
  must be one SELECT/WITH over tables and views whose functions all come from a built-in list of
  pure scalar, aggregate and window functions (plus the mapping's ``allow_functions:``). Quoted or
  schema-qualified function names, user-defined types, locking clauses and SELECT ... INTO are
  refused; on MySQL/MariaDB so are executable comments (``/*!``, ``/*M!``), optimizer hints
  (``/*+``), user variables and backslashes, which sqlglot reads differently from the server.

This module imports nothing of booking-etl, so etl/config/models.py can use it while loading files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import sqlglot
import sqlglot.expressions as exp

# ---------------------------------------------------------------------------- connector options

_TLS_PG = {
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslcompression",
    "sslsni",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "channel_binding",
    "require_auth",
}
_TLS_MYSQL = {
    "ssl_ca",
    "ssl_capath",
    "ssl_cert",
    "ssl_key",
    "ssl_key_password",
    "ssl_cipher",
    "ssl_check_hostname",
    "ssl_verify_cert",
    "ssl_verify_identity",
    "ssl_disabled",
    "server_public_key",
}
# ODBC connection string keywords (SQL Server's drivers, FreeTDS, psqlODBC, MariaDB/MySQL ODBC):
# TLS, timeouts, charset, application name, fetch buffering. Compared case-insensitively.
_ODBC = {
    "driver",  # SQLAlchemy's pyodbc URL names the ODBC driver in the query string
    "encrypt",
    "encryption",
    "trustservercertificate",
    "hostnameincertificate",
    "servercertificate",
    "trustedconnection",
    "trusted_connection",
    "authentication",
    "columnencryption",
    "multisubnetfailover",
    "applicationintent",  # ReadOnly only (see _VALUES)
    "app",
    "application name",
    "appname",
    "workstation id",
    "wsid",
    "connection timeout",
    "connect timeout",
    "logintimeout",
    "timeout",
    "connectretrycount",
    "connectretryinterval",
    "keepalive",
    "keepaliveinterval",
    "packet size",
    "tds_version",
    "clientcharset",
    "servercharset",
    "port",
    "longasmax",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslca",
    "sslverify",
    "ssl_verify",
    "tlsversion",
    "forcetls",
    "charset",
    "readonly",  # psqlODBC: 1 only (see _VALUES)
    "usedeclarefetch",
    "useserversideprepare",
    "fetch",
    "protocol",
    "usessl",
}
ALLOWED_OPTIONS: dict[str, frozenset[str]] = {
    "postgresql": frozenset(
        _TLS_PG
        | {
            "connect_timeout",
            "application_name",
            "fallback_application_name",
            "client_encoding",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
            "tcp_user_timeout",
            "target_session_attrs",
            "load_balance_hosts",
            "hostaddr",
            "passfile",
        }
    ),
    "mysql": frozenset(
        _TLS_MYSQL
        | {
            "charset",
            "collation",
            "connect_timeout",
            "read_timeout",
            "write_timeout",
            "program_name",
            "unix_socket",
            "bind_address",
        }
    ),
    "mssql": frozenset(_ODBC),
    "oracle": frozenset(
        {
            "service_name",
            "sid",
            "tcp_connect_timeout",
            "expire_time",
            "retry_count",
            "retry_delay",
            "ssl_server_dn_match",
            "ssl_server_cert_dn",
            "wallet_location",
            "wallet_password",
            "config_dir",
            "protocol",
            "https_proxy",
            "https_proxy_port",
            "program",
            "machine",
            "disable_oob",
            "encoding",
            "nencoding",
        }
    ),
    "sqlite": frozenset({"mode", "uri", "timeout"}),
}
ALLOWED_OPTIONS["mariadb"] = ALLOWED_OPTIONS["mysql"]
ALLOWED_OPTIONS["odbc"] = ALLOWED_OPTIONS["mssql"]

# Allowed options whose value must be one of these (lower case): anything else is refused.
_VALUES: dict[str, set[str]] = {
    "applicationintent": {"readonly"},
    "readonly": {"1", "yes", "true", "on"},
    "mode": {"ro"},
}
# Why the most tempting refused options are refused (the rest: "not on the allowlist").
_WHY = {
    "init_command": "runs SQL when the session opens, before booking-etl makes it read-only",
    "initstmt": "runs SQL when the session opens, before booking-etl makes it read-only",
    "connsettings": "runs SQL when the session opens, before booking-etl makes it read-only",
    "options": "passes server settings (-c default_transaction_read_only=off) at login",
    "autocommit": "changes how transactions begin and end",
    "client_flag": "changes the protocol (e.g. multiple statements in one query)",
    "option": "sets client flags (e.g. multiple statements in one query)",
    "local_infile": "lets the server read files of this host",
    "read_default_file": "reads further options (init-command) from a file",
    "read_default_group": "reads further options (init-command) from a file",
    "sql_mode": "changes how the server reads SQL",
    "odbc_connect": "hands a raw ODBC connection string to the driver",
    "service": "reads further options from a pg_service file",
    "mode": "SQLite: only mode=ro",
    "readonly": "ODBC: only ReadOnly=1",
    "applicationintent": "only ApplicationIntent=ReadOnly",
}


def option_refusals(
    dialect: str, options: Mapping[str, Any], odbc: bool = False
) -> list[tuple[str, str]]:
    """(option, why) for every connector option not on ``dialect``'s allowlist.

    ``odbc``: the options go to an ODBC driver (a ``+pyodbc`` URL), whose keywords are compared
    case-insensitively.
    """
    allowed = ALLOWED_OPTIONS["odbc" if odbc else dialect]
    fold = odbc or dialect == "mssql"
    out = []
    for key, value in options.items():
        name = key.lower() if fold else key
        values = _VALUES.get(name.lower())
        if name in allowed and (values is None or str(value).strip().lower() in values):
            continue
        why = _WHY.get(name.lower(), "not on the list of harmless connection options")
        out.append((key, why))
    return out


def url_option_refusals(dialect: str, url: str) -> list[tuple[str, str]]:
    """``option_refusals`` for the query string of a connector's ``url``."""
    import sqlalchemy as sa  # only here: config loading stays light

    try:
        parsed = sa.make_url(url)
    except Exception:  # the engine reports an unusable URL with its own message
        return []
    odbc = parsed.get_driver_name() == "pyodbc"
    query = {k: v[0] if isinstance(v, tuple) and v else v for k, v in parsed.query.items()}
    return option_refusals(dialect, query, odbc=odbc)


def allowed_options(dialect: str) -> list[str]:
    """The allowlist of connector options for ``dialect``, sorted (for docs and messages)."""
    return sorted(ALLOWED_OPTIONS[dialect])


# ---------------------------------------------------------------------------- custom queries

SQLGLOT = {"postgresql": "postgres", "mssql": "tsql", "mariadb": "mysql"}

# sqlglot's typed functions that are pure scalar, aggregate or window functions in every database
# (each renders to the database's own function of that meaning).
_PURE_TYPED = {
    "Abs",
    "Acos",
    "Asin",
    "Atan",
    "Atan2",
    "Avg",
    "Case",
    "Cast",
    "Ceil",
    "Coalesce",
    "Concat",
    "ConcatWs",
    "Convert",
    "Cos",
    "Cot",
    "Count",
    "CountIf",
    "CumeDist",
    "CurrentDate",
    "CurrentTime",
    "CurrentTimestamp",
    "Date",
    "DateAdd",
    "DateDiff",
    "DateStrToDate",
    "DateSub",
    "DateToDateStr",
    "DateTrunc",
    "Datetime",
    "DatetimeAdd",
    "DatetimeDiff",
    "DatetimeSub",
    "DatetimeTrunc",
    "Day",
    "DayOfMonth",
    "DayOfWeek",
    "DayOfWeekIso",
    "DayOfYear",
    "Dayname",
    "Decode",
    "DecodeCase",
    "Degrees",
    "DenseRank",
    "Exp",
    "Extract",
    "First",
    "FirstValue",
    "Floor",
    "FromBase64",
    "Greatest",
    "GroupConcat",
    "Hex",
    "Hour",
    "If",
    "Initcap",
    "Lag",
    "Last",
    "LastDay",
    "LastValue",
    "Lead",
    "Least",
    "Left",
    "Length",
    "Ln",
    "Localtime",
    "Localtimestamp",
    "Log",
    "Lower",
    "MD5",
    "Max",
    "Median",
    "Min",
    "Minute",
    "Month",
    "Monthname",
    "MonthsBetween",
    "NthValue",
    "Ntile",
    "Nullif",
    "NumberToStr",
    "Nvl2",
    "Pad",
    "PercentRank",
    "PercentileCont",
    "PercentileDisc",
    "Pi",
    "Pow",
    "Quarter",
    "Radians",
    "Rank",
    "RegexpLike",
    "RegexpReplace",
    "RegexpSubstr",
    "RegexpExtract",
    "RegexpILike",
    "Repeat",
    "Replace",
    "Reverse",
    "Right",
    "Round",
    "RowNumber",
    "SHA",
    "SHA2",
    "Second",
    "Sign",
    "Sin",
    "Space",
    "SplitPart",
    "Sqrt",
    "Stddev",
    "StddevPop",
    "StddevSamp",
    "StrPosition",
    "StrToDate",
    "StrToTime",
    "StrToUnix",
    "StringToArray",
    "Substring",
    "SubstringIndex",
    "Sum",
    "Tan",
    "Time",
    "TimeAdd",
    "TimeDiff",
    "TimeStrToDate",
    "TimeStrToTime",
    "TimeStrToUnix",
    "TimeSub",
    "TimeToStr",
    "TimeToTimeStr",
    "TimeToUnix",
    "TimeTrunc",
    "Timestamp",
    "TimestampAdd",
    "TimestampDiff",
    "TimestampSub",
    "TimestampTrunc",
    "ToBase64",
    "ToChar",
    "ToNumber",
    "Translate",
    "Trim",
    "Trunc",
    "TryCast",
    "TsOrDsAdd",
    "TsOrDsDiff",
    "TsOrDsToDate",
    "TsOrDsToDateStr",
    "TsOrDsToDatetime",
    "TsOrDsToTime",
    "TsOrDsToTimestamp",
    "Unhex",
    "UnixToStr",
    "UnixToTime",
    "UnixToTimeStr",
    "Upper",
    "UtcDate",
    "UtcTime",
    "UtcTimestamp",
    "Variance",
    "VariancePop",
    "Week",
    "WeekOfYear",
    "Year",
    "AnyValue",
    "ArrayAgg",
    "LogicalAnd",
    "LogicalOr",
    "BitwiseAndAgg",
    "BitwiseOrAgg",
    "BitwiseXorAgg",
    "Corr",
    "CovarPop",
    "CovarSamp",
    "Chr",
    "Ascii",
    "Unicode",
    "Levenshtein",
    "Soundex",
    "ToDays",
    "FromISO8601Timestamp",
    "DateFromParts",
    "TimeFromParts",
    "TimestampFromParts",
    "StartsWith",
    "EndsWith",
    "Contains",
    "ConvertTimezone",
    "JSONExtract",
    "JSONExtractScalar",
    "JSONBExtract",
    "JSONBExtractScalar",
    "Collate",
    "Exists",
    "AddMonths",
    "Systimestamp",
    "CurrentSchema",
    "ArraySize",
    "ExplodingGenerateSeries",
    "GenerateSeries",
    "SHA2Digest",
    "Explode",
    "Stuff",
    "CurrentTimestampLTZ",
    "CurrentUser",
    "CurrentDatabase",
}

# Per database: functions sqlglot does not type (it keeps their name), known to be pure.
_COMMON_NAMES = {
    "ABS",
    "CEILING",
    "CHAR_LENGTH",
    "CHARACTER_LENGTH",
    "COALESCE",
    "CONCAT",
    "LOWER",
    "LTRIM",
    "MOD",
    "NULLIF",
    "POSITION",
    "POWER",
    "ROUND",
    "RTRIM",
    "SUBSTR",
    "TRIM",
    "UPPER",
    "OCTET_LENGTH",
    "BIT_LENGTH",
    "LENGTH",
    "REPLACE",
    "SIGN",
    "SQRT",
    "FLOOR",
    "CEIL",
    "GREATEST",
    "LEAST",
    "LPAD",
    "RPAD",
    "REVERSE",
    "TRUNC",
    "TRUNCATE",
    "EXP",
    "LN",
    "LOG",
    "LOG10",
    "LOG2",
    "DEGREES",
    "RADIANS",
    "SIN",
    "COS",
    "TAN",
    "ATAN",
    "ASIN",
    "ACOS",
    "COT",
    "STDDEV",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "BIT_AND",
    "BIT_OR",
    "BIT_XOR",
    "EVERY",
    "BOOL_AND",
    "BOOL_OR",
    "STRING_AGG",
    "ARRAY_AGG",
    "LISTAGG",
    "ROW_NUMBER",
    "RANK",
    "DENSE_RANK",
    "PERCENT_RANK",
    "CUME_DIST",
    "NTILE",
    "LAG",
    "LEAD",
    "FIRST_VALUE",
    "LAST_VALUE",
    "NTH_VALUE",
    "GROUPING",
}
PURE_FUNCTIONS: dict[str, frozenset[str]] = {
    "postgresql": frozenset(
        _COMMON_NAMES
        | {
            "AGE",
            "BTRIM",
            "CBRT",
            "CHR",
            "CLOCK_TIMESTAMP",
            "CONCAT_WS",
            "DATE_BIN",
            "DATE_PART",
            "DATE_TRUNC",
            "DIV",
            "FORMAT",
            "GCD",
            "INITCAP",
            "ISFINITE",
            "JUSTIFY_DAYS",
            "JUSTIFY_HOURS",
            "JUSTIFY_INTERVAL",
            "LCM",
            "LEFT",
            "MAKE_DATE",
            "MAKE_INTERVAL",
            "MAKE_TIME",
            "MAKE_TIMESTAMP",
            "MAKE_TIMESTAMPTZ",
            "MD5",
            "NOW",
            "NUM_NONNULLS",
            "NUM_NULLS",
            "OVERLAY",
            "PI",
            "QUOTE_IDENT",
            "QUOTE_LITERAL",
            "QUOTE_NULLABLE",
            "REGEXP_MATCH",
            "REGEXP_MATCHES",
            "REGEXP_REPLACE",
            "REGEXP_SPLIT_TO_ARRAY",
            "REPEAT",
            "RIGHT",
            "SCALE",
            "SPLIT_PART",
            "STATEMENT_TIMESTAMP",
            "STRPOS",
            "TIMEOFDAY",
            "TO_CHAR",
            "TO_DATE",
            "TO_HEX",
            "TO_NUMBER",
            "TO_TIMESTAMP",
            "TRANSACTION_TIMESTAMP",
            "TRANSLATE",
            "TRIM_SCALE",
            "WIDTH_BUCKET",
            "ASCII",
            "STARTS_WITH",
            "UNNEST",
            "GENERATE_SERIES",
            "ARRAY_LENGTH",
            "CARDINALITY",
            "ARRAY_TO_STRING",
            "STRING_TO_ARRAY",
            "ENCODE",
            "DECODE",
            "SHA256",
            "JSONB_EXTRACT_PATH_TEXT",
            "JSON_EXTRACT_PATH_TEXT",
            "TIMEZONE",
            "EXTRACT",
            "MODE",
            "PERCENTILE_CONT",
            "PERCENTILE_DISC",
        }
    ),
    "mysql": frozenset(
        _COMMON_NAMES
        | {
            "ADDDATE",
            "ADDTIME",
            "CHAR",
            "CONCAT_WS",
            "CONVERT_TZ",
            "CURDATE",
            "CURTIME",
            "DATE",
            "DATE_ADD",
            "DATE_FORMAT",
            "DATE_SUB",
            "DATEDIFF",
            "DAY",
            "DAYNAME",
            "DAYOFMONTH",
            "DAYOFWEEK",
            "DAYOFYEAR",
            "ELT",
            "FIELD",
            "FIND_IN_SET",
            "FORMAT",
            "FROM_DAYS",
            "FROM_UNIXTIME",
            "GROUP_CONCAT",
            "HEX",
            "HOUR",
            "IF",
            "IFNULL",
            "INSERT",
            "INSTR",
            "LAST_DAY",
            "LCASE",
            "LEFT",
            "LOCATE",
            "MAKEDATE",
            "MAKETIME",
            "MD5",
            "MICROSECOND",
            "MID",
            "MINUTE",
            "MONTH",
            "MONTHNAME",
            "NOW",
            "PERIOD_ADD",
            "PERIOD_DIFF",
            "PI",
            "QUARTER",
            "REGEXP_INSTR",
            "REGEXP_REPLACE",
            "REGEXP_SUBSTR",
            "REPEAT",
            "RIGHT",
            "SEC_TO_TIME",
            "SECOND",
            "SPACE",
            "STR_TO_DATE",
            "STRCMP",
            "SUBDATE",
            "SUBSTRING_INDEX",
            "SUBTIME",
            "SYSDATE",
            "TIME",
            "TIME_FORMAT",
            "TIME_TO_SEC",
            "TIMEDIFF",
            "TIMESTAMP",
            "TIMESTAMPADD",
            "TIMESTAMPDIFF",
            "TO_DAYS",
            "TO_SECONDS",
            "UCASE",
            "UNHEX",
            "UNIX_TIMESTAMP",
            "UTC_DATE",
            "UTC_TIME",
            "UTC_TIMESTAMP",
            "WEEK",
            "WEEKDAY",
            "WEEKOFYEAR",
            "YEAR",
            "YEARWEEK",
            "ASCII",
            "ORD",
            "BIN",
            "OCT",
            "CONV",
            "CRC32",
            "SHA1",
            "SHA2",
            "TO_BASE64",
            "FROM_BASE64",
            "EXTRACT",
            "JSON_EXTRACT",
            "JSON_UNQUOTE",
            "JSON_VALUE",
            "NVL",
            "NVL2",
            "DECODE",
        }
    ),
    "mssql": frozenset(
        _COMMON_NAMES
        | {
            "CHARINDEX",
            "CHOOSE",
            "CONCAT_WS",
            "DATALENGTH",
            "DATEADD",
            "DATEDIFF",
            "DATEDIFF_BIG",
            "DATEFROMPARTS",
            "DATENAME",
            "DATEPART",
            "DATETIME2FROMPARTS",
            "DATETIMEFROMPARTS",
            "DATETIMEOFFSETFROMPARTS",
            "DAY",
            "EOMONTH",
            "FORMAT",
            "GETDATE",
            "GETUTCDATE",
            "IIF",
            "ISDATE",
            "ISNULL",
            "ISNUMERIC",
            "LEFT",
            "LEN",
            "MONTH",
            "PATINDEX",
            "QUOTENAME",
            "REPLICATE",
            "RIGHT",
            "SPACE",
            "STR",
            "STRING_AGG",
            "STUFF",
            "SWITCHOFFSET",
            "SYSDATETIME",
            "SYSDATETIMEOFFSET",
            "SYSUTCDATETIME",
            "TODATETIMEOFFSET",
            "TRY_CAST",
            "TRY_CONVERT",
            "TRY_PARSE",
            "PARSE",
            "YEAR",
            "CONVERT",
            "CAST",
            "SQUARE",
            "CHAR",
            "NCHAR",
            "UNICODE",
            "ASCII",
        }
    ),
    "oracle": frozenset(
        _COMMON_NAMES
        | {
            "ADD_MONTHS",
            "CHR",
            "CONCAT",
            "CURRENT_DATE",
            "CURRENT_TIMESTAMP",
            "DECODE",
            "EXTRACT",
            "FROM_TZ",
            "INITCAP",
            "INSTR",
            "LAST_DAY",
            "LOCALTIMESTAMP",
            "MONTHS_BETWEEN",
            "NEW_TIME",
            "NEXT_DAY",
            "NUMTODSINTERVAL",
            "NUMTOYMINTERVAL",
            "NVL",
            "NVL2",
            "REGEXP_COUNT",
            "REGEXP_INSTR",
            "REGEXP_REPLACE",
            "REGEXP_SUBSTR",
            "SYS_EXTRACT_UTC",
            "SYSDATE",
            "SYSTIMESTAMP",
            "TO_CHAR",
            "TO_DATE",
            "TO_NUMBER",
            "TO_TIMESTAMP",
            "TO_TIMESTAMP_TZ",
            "TRANSLATE",
            "TZ_OFFSET",
            "ROUND",
            "TRUNC",
            "LENGTHB",
            "SUBSTRB",
            "ASCII",
            "REMAINDER",
            "BITAND",
        }
    ),
    "sqlite": frozenset(
        _COMMON_NAMES
        | {
            "DATE",
            "DATETIME",
            "IFNULL",
            "IIF",
            "INSTR",
            "JULIANDAY",
            "PRINTF",
            "FORMAT",
            "STRFTIME",
            "TIME",
            "UNIXEPOCH",
            "TYPEOF",
            "HEX",
            "QUOTE",
            "GROUP_CONCAT",
            "CHAR",
            "UNICODE",
            "TOTAL",
            "LIKELIHOOD",
            "LIKELY",
            "UNLIKELY",
            "JSON_EXTRACT",
        }
    ),
}
PURE_FUNCTIONS["mariadb"] = PURE_FUNCTIONS["mysql"]

_MYSQL_RAW = [
    (re.compile(r"/\*\s*M?!"), "an executable comment (/*! ... */ or /*M! ... */)"),
    (re.compile(r"/\*\s*\+"), "an optimizer hint (/*+ ... */)"),
    (re.compile(r"\\"), "a backslash (the server may read it as an escape where sqlglot does not)"),
]
NOT_SQL = "does not parse as SQL"
_LOCK_HINTS = {
    "UPDLOCK",
    "XLOCK",
    "TABLOCK",
    "TABLOCKX",
    "HOLDLOCK",
    "PAGLOCK",
    "ROWLOCK",
    "SERIALIZABLE",
    "REPEATABLEREAD",
    "READCOMMITTEDLOCK",
}
_ALLOW_HINT = (
    "ask the database administrator for a view that does it (and map the view as the table), "
    "or, if you are sure it only reads, list it under 'source.allow_functions' in the mapping "
    "(docs/read-only.md)"
)


def function_name(node: exp.Func) -> tuple[str, bool]:
    """(the name a function call is checked by, whether that name was quoted)."""
    if isinstance(node, exp.Anonymous):
        this = node.args.get("this")
        if isinstance(this, exp.Identifier):
            return this.name.upper(), bool(this.args.get("quoted"))
        return str(this).upper(), False
    return node.sql_name().upper(), False


def query_refusals(sql: str, dialect: str, allow: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(construct, how to allow it or '') for each thing in a custom query that is not on the
    allowlist; empty when the query is one SELECT/WITH reading tables with pure functions."""
    allowed = {a.upper() for a in allow}
    out: list[tuple[str, str]] = []
    if dialect in ("mysql", "mariadb"):
        for pattern, what in _MYSQL_RAW:
            if pattern.search(sql):
                out.append((what, "remove it; booking-etl does not send it to MySQL or MariaDB"))
    try:
        statements = [s for s in sqlglot.parse(sql, read=SQLGLOT.get(dialect, dialect)) if s]
    except Exception as exc:  # sqlglot raises more than ParseError on odd input
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [*out, (f"{NOT_SQL}: {first}", "")]
    if len(statements) != 1:
        return [*out, (f"{len(statements)} statements (one SELECT only)", "")]
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        return [*out, (f"a {tree.key.upper()} statement (only SELECT or WITH ... SELECT)", "")]
    for node in tree.walk():
        if isinstance(node, exp.Into):
            out.append(("SELECT ... INTO", ""))
        elif isinstance(node, exp.Lock):
            out.append((f"a locking clause ({_lock_text(node)})", "remove it: reads never lock"))
        elif isinstance(node, exp.DML | exp.Create | exp.Drop | exp.Alter | exp.Command):
            out.append((f"a {node.key.upper()} inside the query", ""))
        elif isinstance(node, exp.Parameter | exp.Placeholder):
            out.append(("a parameter or session variable", ""))
        elif isinstance(node, exp.SessionParameter):
            out.append((f"the session variable @@{node.name}", ""))
        elif isinstance(node, exp.PropertyEQ):
            out.append(("an assignment (:=)", ""))
        elif isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
            out.append((f"the user-defined type {node.sql()}", _ALLOW_HINT))
        elif isinstance(node, exp.Func) and not isinstance(node, exp.Connector):
            out += _function_refusal(node, dialect, allowed)
        elif isinstance(node, exp.WithTableHint):
            hints = {h.name.upper() for h in node.expressions} & _LOCK_HINTS
            out += [(f"the locking table hint {h}", "remove it: reads never lock") for h in hints]
        elif isinstance(node, exp.Hint):
            out.append(("an optimizer hint", "remove it"))
    if dialect in ("mysql", "mariadb"):
        out += [
            (f"the user variable {v.sql()}", "")
            for v in tree.find_all(exp.Var)
            if v.name.startswith("@")
        ]
    return list(dict.fromkeys(out))


def _function_refusal(node: exp.Func, dialect: str, allowed: set[str]) -> list[tuple[str, str]]:
    name, quoted = function_name(node)
    if quoted:
        return [(f'the quoted function name "{name}"', "write built-in functions unquoted")]
    if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
        return [(f"the schema-qualified function {node.parent.sql()}", _ALLOW_HINT)]
    if name in allowed:
        return []
    if isinstance(node, exp.Anonymous):
        if name in PURE_FUNCTIONS.get(dialect, frozenset()):
            return []
    elif type(node).__name__ in _PURE_TYPED or name in PURE_FUNCTIONS.get(dialect, ()):
        return []
    return [(f"the function {name}() (not on the list of pure built-in functions)", _ALLOW_HINT)]


def _lock_text(node: exp.Lock) -> str:
    return "FOR UPDATE" if node.args.get("update") else "FOR SHARE / LOCK IN SHARE MODE"


def query_problems(sql: str, dialect: str, allow: Iterable[str] = ()) -> list[str]:
    """``query_refusals`` as message fragments: ``refused X: how to allow it``."""
    return [f"{what}: {how}" if how else what for what, how in query_refusals(sql, dialect, allow)]
