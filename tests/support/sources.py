"""Projects whose jobs read a file drop or an HTTP API, and a real HTTP server on loopback that
serves paged booking records in the REST and OData styles (tests/test_sources_*.py)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

BERLIN = ZoneInfo("Europe/Berlin")

#: one mapping for every kind of connector: only the connector changes between them
BOOKINGS_MAPPING = """\
structure: bookings
source: {table: BUCHUNGEN}
columns:
  timestamp: ZEIT
  order_code: AUFTRAG
  machine_code: MASCHINE
  event: ART
events: {START: [10], END: [20]}
filters:
  - {column: WERK, eq: '1000'}
"""


def write_project(root: Path, connector: str, start_from: str = "2026-11-01") -> Path:
    """A project at ``root`` with one job 'bookings' on ``connector`` (the YAML text)."""
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text(
        "store: sqlite:///store.sqlite\nparquet: output/parquet\n"
        f"defaults: {{start_from: '{start_from}', safety_lag: 0s, reread: 2d}}\n"
    )
    (root / "connectors" / "plant.yaml").write_text(connector)
    (root / "mappings" / "bookings.yaml").write_text(BOOKINGS_MAPPING)
    (root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
    return root


#: the day of the shift: yesterday in Berlin, inside every run's re-read window
DAY = datetime.now(BERLIN).replace(
    hour=0, minute=0, second=0, microsecond=0, tzinfo=None
) - timedelta(days=1)


def at(hour: int, minute: int) -> datetime:
    """Berlin wall-clock time on the shift's day."""
    return DAY.replace(hour=hour, minute=minute)


#: (machine, order, event, Berlin wall-clock, plant) of a small shift: M1 runs A then B, M2
#: runs C (still open), and a row of plant 2000 the filter drops
BOOKINGS = [
    ("M1", "A", 10, at(6, 0), "1000"),
    ("M1", "A", 20, at(8, 30), "1000"),
    ("M1", "B", 10, at(9, 0), "1000"),
    ("M1", "B", 20, at(11, 15), "1000"),
    ("M2", "C", 10, at(7, 45), "1000"),
    ("M3", "X", 10, at(7, 0), "2000"),
]


def expected_runs() -> pd.DataFrame:
    """The runs the shift folds into (UTC), sorted like ``store_runs``."""
    rows = [
        ("M1", "A", utc(at(6, 0)), utc(at(8, 30))),
        ("M1", "B", utc(at(9, 0)), utc(at(11, 15))),
        ("M2", "C", utc(at(7, 45)), pd.NaT),
    ]
    frame = pd.DataFrame(rows, columns=["machine_code", "order_code", "start", "end"])
    return _sorted(frame)


def utc(wall: datetime) -> pd.Timestamp:
    """Berlin wall-clock time as a UTC timestamp."""
    return pd.Timestamp(wall.replace(tzinfo=BERLIN).astimezone(UTC))


def store_runs(root: Path, job: str = "bookings") -> pd.DataFrame:
    """The job's stored runs: machine, order, start, end (UTC), sorted."""
    with sqlite3.connect(root / "store.sqlite") as conn:
        frame = pd.read_sql_query(
            'SELECT machine_code, order_code, start, "end" FROM production_runs WHERE job = ?',
            conn,
            params=(job,),
        )
    return _sorted(frame)


def sync_rows(root: Path) -> list[tuple[object, ...]]:
    """(status, rows_read, error) of every audit row, oldest first."""
    with sqlite3.connect(root / "store.sqlite") as conn:
        return conn.execute("SELECT status, rows_read, error FROM sync_runs ORDER BY id").fetchall()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("machine_code", "order_code"):
        frame[col] = frame[col].astype("string")
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame.sort_values(["machine_code", "start"]).reset_index(drop=True)


# --------------------------------------------------------------------------- a real HTTP API


def records(style: str = "iso") -> list[dict[str, object]]:
    """The shift as API records, timestamps written the way ``style`` says."""
    out: list[dict[str, object]] = []
    for machine, order, event, wall, plant in BOOKINGS:
        instant = wall.replace(tzinfo=BERLIN)
        millis = int(instant.timestamp() * 1000)
        stamp: object = {
            "iso": instant.isoformat(),  # with its offset
            "naive": wall.isoformat(),  # plant wall-clock time
            "epoch_ms": millis,
            "epoch_s": millis // 1000,
            "odata2": f"/Date({millis}+0060)/",
            "utc": instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }[style]
        out.append(
            {"MASCHINE": machine, "AUFTRAG": order, "ART": event, "ZEIT": stamp, "WERK": plant}
        )
    return out


class Api:
    """A threaded HTTP server on 127.0.0.1 that serves the shift in every paging style, OData
    v2 and v4, with authentication, 429s, 500s and malformed pages on request. ``seen`` holds
    every request (path and query, headers) it answered."""

    TOKEN = "tok-3f9a1c77e2b8"  # bearer
    API_KEY = "key-b81d2e6a4c09"
    USER, PASSWORD = "etl", "pw-71c3aa90d5"
    CLIENT_ID, CLIENT_SECRET = "etl-client", "cs-5be0f2d8a913"

    def __init__(self, clock: datetime, tls: tuple[Path, Path] | None = None) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.clock = clock  # what the Date header says
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.faults: list[int] = []  # statuses to answer before the next real answers
        self.malformed_after = -1  # answer the n-th page with HTML
        self.issued: list[str] = []  # OAuth2 access tokens handed out
        self.token_uses = 0
        self.max_token_uses = 1_000
        self.repeat_cursor = False
        api = self

        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                from email.utils import format_datetime

                return format_datetime(api.clock.astimezone(UTC), usegmt=True)

            def do_POST(self) -> None:
                api.token_request(self)

            def do_GET(self) -> None:
                api.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:  # HTTPS with the certificate and key given
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL."""
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- answers

    def send(
        self, handler: object, status: int, body: object, headers: dict[str, str] | None = None
    ) -> None:
        import json as _json

        h = handler  # BaseHTTPRequestHandler
        data = body if isinstance(body, bytes) else _json.dumps(body).encode()
        h.send_response(status)  # type: ignore[attr-defined]
        content_type = "text/html" if isinstance(body, bytes) else "application/json"
        h.send_header("Content-Type", content_type)  # type: ignore[attr-defined]
        h.send_header("Content-Length", str(len(data)))  # type: ignore[attr-defined]
        for key, value in (headers or {}).items():
            h.send_header(key, value)  # type: ignore[attr-defined]
        h.end_headers()  # type: ignore[attr-defined]
        h.wfile.write(data)  # type: ignore[attr-defined]

    def token_request(self, handler: object) -> None:
        import base64
        import uuid as _uuid

        auth = handler.headers.get("Authorization", "")  # type: ignore[attr-defined]
        length = int(handler.headers.get("Content-Length", 0))  # type: ignore[attr-defined]
        form = handler.rfile.read(length).decode()  # type: ignore[attr-defined]
        expected = base64.b64encode(f"{self.CLIENT_ID}:{self.CLIENT_SECRET}".encode()).decode()
        if auth != f"Basic {expected}" or "grant_type=client_credentials" not in form:
            self.send(handler, 401, {"error": "invalid_client"})
            return
        token = f"at-{_uuid.uuid4().hex}"
        self.issued.append(token)
        self.token_uses = 0
        self.send(handler, 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def authorized(self, path: str, headers: dict[str, str]) -> bool:
        import base64

        auth = headers.get("authorization", "")
        if path.startswith("/bearer/"):
            return auth == f"Bearer {self.TOKEN}"
        if path.startswith("/key/"):
            return headers.get("x-api-key") == self.API_KEY
        if path.startswith("/basic/"):
            return (
                auth
                == "Basic " + base64.b64encode(f"{self.USER}:{self.PASSWORD}".encode()).decode()
            )
        if path.startswith("/oauth/"):
            if not self.issued or auth != f"Bearer {self.issued[-1]}":
                return False
            self.token_uses += 1
            return self.token_uses <= self.max_token_uses  # then the token "expires"
        return True

    def answer(self, handler: object) -> None:
        from urllib.parse import parse_qs, urlsplit

        raw = handler.path  # type: ignore[attr-defined]
        parts = urlsplit(raw)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}  # type: ignore[attr-defined]
        self.seen.append((raw, headers))
        if self.faults:
            status = self.faults.pop(0)
            self.send(
                handler, status, {"error": "busy"}, {"Retry-After": "0"} if status == 429 else None
            )
            return
        path = parts.path
        if not self.authorized(path, headers):
            self.send(handler, 401, {"error": "unauthorized"})
            return
        base = self.url
        for prefix in ("/bearer", "/key", "/basic", "/oauth"):
            if path.startswith(prefix + "/"):
                path, base = path[len(prefix) :], self.url + prefix
        pages = sum(1 for p, _ in self.seen if urlsplit(p).path == parts.path)
        if self.malformed_after >= 0 and pages > self.malformed_after:
            self.send(handler, 200, b"<html>502 Bad Gateway</html>")
            return
        self.route(handler, path, query, base)

    def route(self, handler: object, path: str, query: dict[str, str], base: str) -> None:
        """Answer ``path`` (its auth prefix taken off; ``base``: the URL next links start with)."""
        rows = records("iso")
        if path == "/rest/offset":  # records at data.items, window as from/to
            lo, hi = query.get("from"), query.get("to")
            if lo and hi:
                rows = [r for r in records("utc") if lo <= str(r["ZEIT"]) < hi]
            start, size = int(query.get("offset", 0)), int(query.get("limit", 100))
            self.send(handler, 200, {"data": {"items": rows[start : start + size]}})
        elif path == "/rest/page":  # page numbers from 1, epoch milliseconds
            rows = records("epoch_ms")
            page, size = int(query.get("page", 1)), int(query.get("size", 2))
            self.send(handler, 200, {"items": rows[(page - 1) * size : page * size]})
        elif path == "/rest/next":  # a next link in the body, plant wall-clock times
            rows, start = records("naive"), int(query.get("after", 0))
            following = f"next?after={start + 2}" if start + 2 < len(rows) else None
            self.send(handler, 200, {"results": rows[start : start + 2], "next": following})
        elif path == "/rest/link":  # the body is the list; Link header; epoch seconds
            rows, start = records("epoch_s"), int(query.get("start", 0))
            link = (
                {"Link": f'<{base}/rest/link?start={start + 2}>; rel="next"'}
                if start + 2 < len(rows)
                else {}
            )
            self.send(handler, 200, rows[start : start + 2], link)
        elif path == "/rest/cursor":  # a cursor token
            start = int(query.get("cursor", "0").removeprefix("c"))
            following = f"c{start + 2}" if start + 2 < len(rows) else None
            if self.repeat_cursor:
                following = "c2"
            self.send(handler, 200, {"data": rows[start : start + 2], "next_cursor": following})
        elif path == "/rest/nested":  # records two levels down, fields nested in each record
            nested = [{**r, "res": {"MASCHINE": r.pop("MASCHINE")}} for r in rows]
            self.send(handler, 200, {"payload": {"rows": nested}})
        elif path == "/odata/v4/Bookings":  # the server caps pages at 2 whatever $top says
            start = int(query.get("$skiptoken", 0))
            body: dict[str, object] = {
                "@odata.context": "$metadata#Bookings",
                "value": rows[start : start + 2],
            }
            if start + 2 < len(rows):
                body["@odata.nextLink"] = f"{base}/odata/v4/Bookings?$skiptoken={start + 2}"
            self.send(handler, 200, body)
        elif path == "/odata/v2/Bookings":
            rows, start = records("odata2"), int(query.get("$skiptoken", 0))
            d: dict[str, object] = {"results": rows[start : start + 2]}
            if start + 2 < len(rows):
                d["__next"] = f"{base}/odata/v2/Bookings?$skiptoken={start + 2}"
            self.send(handler, 200, {"d": d})
        else:
            self.send(handler, 404, {"error": "no such endpoint"})


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it, made with the openssl
    command: (ca.pem, server.pem, server.key)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=booking-etl test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"
