"""Vendor-style tables for measuring ``etl discover``: each is written from one plausible plant
history (machines running orders one after another, quantity reports, pauses and resumes, a few
cancelled rows, a rare code now and then) in the layout and language a vendor would choose, with the
mapping decisions an integrator would write for it.

The names are what the vendors' products use or would plausibly use; they were not chosen to fit
the discover vocabulary (etl/commands/discover/vocabulary.py), and several are not in it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

BERLIN = ZoneInfo("Europe/Berlin")
SPRING = datetime(2026, 3, 25, 0, 0)  # UTC; the change is on 2026-03-29
AUTUMN = datetime(2026, 10, 21, 0, 0)  # UTC; the change is on 2026-10-25
DAYS = 8
CODE_KINDS = ("start", "pause", "resume", "qty", "end", "rare")


@dataclass
class Event:
    """One booking of the true history (UTC)."""

    at: datetime
    plant: str
    machine: str
    order: int
    product: str
    kind: str  # start, pause, resume, qty, end, rare
    cancelled: bool
    operator: int
    qty: int


@dataclass
class Run:
    """One order's stay on a machine (UTC), for order tables."""

    plant: str
    machine: str
    order: int
    operation: int
    product: str
    start: datetime
    end: datetime | None
    cancelled: bool
    qty: int


def history(
    seed: int, start: datetime, machines: int = 6, plants: int = 2
) -> tuple[list[Event], list[Run]]:
    """A plant history: per machine, orders one after another for DAYS days, 24/7."""
    rnd = random.Random(seed)
    products = [
        f"{rnd.choice('ABCDFKLMRSTWZ')}{rnd.choice('ABLMRST')}-{rnd.randint(1000, 9999)}"
        for _ in range(18)
    ]
    events: list[Event] = []
    runs: list[Run] = []
    order_no = 1000 + seed * 37
    stop = start + timedelta(days=DAYS)
    for m in range(machines):
        plant = str(plants and (m % plants) + 1)
        machine = f"{m + 1:02d}"
        t = start + timedelta(minutes=rnd.randint(0, 90))
        while t < stop:
            order_no += rnd.randint(1, 3)
            product = rnd.choice(products)
            length = timedelta(minutes=rnd.randint(120, 600))
            end = t + length
            open_ = end >= stop
            cancelled = rnd.random() < 0.03
            operator = rnd.randint(100, 140)
            qty_total = 0

            base = Event(t, plant, machine, order_no, product, "start", cancelled, operator, 0)

            def add(at: datetime, kind: str, q: int = 0, base: Event = base) -> None:
                # a booking of this order; about 1% of the others are cancelled one by one
                cancel = base.cancelled or rnd.random() < 0.01
                events.append(replace(base, at=at, kind=kind, cancelled=cancel, qty=q))

            add(t, "start")
            at = t
            while True:
                at += timedelta(minutes=rnd.randint(15, 70), seconds=rnd.randint(0, 59))
                if at >= min(end, stop):
                    break
                if rnd.random() < 0.15:
                    add(at, "pause")
                    at += timedelta(minutes=rnd.randint(5, 40), seconds=rnd.randint(0, 59))
                    if at >= min(end, stop):
                        break
                    add(at, "resume")
                else:
                    q = rnd.randint(10, 400)
                    qty_total += q
                    add(at, "qty", q)
                if rnd.random() < 0.004:
                    add(at + timedelta(seconds=30), "rare")
            if not open_:
                add(end, "end", rnd.randint(0, 50))
            runs.append(
                Run(
                    plant,
                    machine,
                    order_no,
                    10,
                    product,
                    t,
                    None if open_ else end,
                    cancelled,
                    qty_total,
                )
            )
            if rnd.random() < 0.15 and not open_:  # the same order again later (a second operation)
                runs.append(
                    Run(
                        plant,
                        machine,
                        order_no,
                        20,
                        product,
                        end + timedelta(minutes=5),
                        end + timedelta(minutes=65),
                        False,
                        0,
                    )
                )
                end += timedelta(minutes=65)
            t = end + timedelta(minutes=rnd.randint(5, 45), seconds=rnd.randint(0, 59))
    events.sort(key=lambda e: (e.at, e.machine))
    runs.sort(key=lambda r: r.start)
    return events, runs


def wall(at: datetime | None, local: bool) -> datetime | None:
    """The naive wall-clock time a vendor stores: plant-local (Europe/Berlin) or UTC."""
    if at is None:
        return None
    if not local:
        return at
    return at.replace(tzinfo=ZoneInfo("UTC")).astimezone(BERLIN).replace(tzinfo=None)


# ------------------------------------------------------------------------------ the vendors


@dataclass
class Vendor:
    """One vendor table: DDL per dialect, rows from a history, and the expected decisions."""

    name: str
    dialect: str  # postgresql or mariadb
    style: str
    structure: str
    columns: list[tuple[str, str]]  # (name, type; generic: serial, text(n), char(n), int, ...)
    row: Callable[[Any, bool], dict[str, Any] | None]
    expected: dict[str, Any]
    codes: dict[str, Any] = field(default_factory=dict)  # kind -> source code
    local: bool = True
    start: datetime = SPRING
    seed: int = 1
    view: bool = False
    primary_key: tuple[str, ...] = ()
    # which of the history's events (or runs) the vendor's table holds; None: all of them
    select: Callable[[list[Any]], list[Any]] | None = None

    def records(self) -> list[Any]:
        """The events (bookings) or runs (orders) of the history that this table holds."""
        events, runs = history(self.seed, self.start)
        chosen = events if self.structure == "bookings" else runs
        return self.select(chosen) if self.select is not None else chosen

    def ddl_type(self, generic: str) -> str:
        pg = self.dialect == "postgresql"
        if generic == "serial":
            return "bigserial" if pg else "bigint AUTO_INCREMENT"
        if generic == "timestamp":
            return "timestamp(0)" if pg else "datetime"
        if generic == "bool":
            return "boolean" if pg else "tinyint(1)"
        if generic.startswith("text("):
            return "varchar" + generic[4:]
        return generic

    def create(self, engine: sa.Engine) -> int:
        """Create and fill the table (or the view over its table); returns the row count."""
        rows = [r for r in (self.row(x, self.local) for x in self.records()) if r]
        names = [n for n, t in self.columns if t != "serial"]
        quote = (lambda n: f'"{n}"') if self.dialect == "postgresql" else (lambda n: f"`{n}`")
        table = f"{self.name}_t" if self.view else self.name
        cols = ", ".join(f"{quote(n)} {self.ddl_type(t)}" for n, t in self.columns)
        keys = [n for n, t in self.columns if t == "serial"] or list(self.primary_key)
        if keys:
            cols += f", PRIMARY KEY ({', '.join(quote(k) for k in keys)})"
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {quote(table)} ({cols})"))
            target = sa.table(table, *[sa.column(n) for n in names])
            conn.execute(sa.insert(target), rows)
            if self.view:
                conn.execute(
                    sa.text(f"CREATE VIEW {quote(self.name)} AS SELECT * FROM {quote(table)}")
                )
        return len(rows)


def _code(v: Vendor) -> Callable[[str], Any]:
    return lambda kind: v.codes[kind]


def _flag(on: bool, yes: Any, no: Any) -> Any:
    return yes if on else no


def vendors() -> list[Vendor]:
    """The corpus: 17 vendor tables, 10 on PostgreSQL and 7 on MariaDB."""
    out: list[Vendor] = []

    # 1. a German BDE (HYDRA style): DATE + TIME, integer codes, J/N cancellation, padded machine
    codes1 = {"start": 10, "pause": 20, "resume": 21, "qty": 40, "end": 30, "rare": 99}
    out.append(
        Vendor(
            "BDE_BUCHUNG",
            "postgresql",
            "German HYDRA-style",
            "bookings",
            [
                ("BUCH_ID", "serial"),
                ("WERK", "char(4)"),
                ("MASCH_NR", "char(8)"),
                ("AUFTRAG_NR", "text(12)"),
                ("ART_NR", "text(20)"),
                ("BUCH_ART", "int"),
                ("BUCH_DATUM", "date"),
                ("BUCH_ZEIT", "time"),
                ("MENGE", "int"),
                ("PERS_NR", "int"),
                ("STORNO", "char(1)"),
            ],
            lambda e, local: {
                "WERK": f"{e.plant}000",
                "MASCH_NR": f"M-{e.machine}",
                "AUFTRAG_NR": f"40{e.order:06d}",
                "ART_NR": e.product,
                "BUCH_ART": codes1[e.kind],
                "BUCH_DATUM": wall(e.at, local).date(),
                "BUCH_ZEIT": wall(e.at, local).time(),
                "MENGE": e.qty,
                "PERS_NR": e.operator,
                "STORNO": _flag(e.cancelled, "J", "N"),
            },
            {
                "timestamp": ("BUCH_DATUM", "BUCH_ZEIT"),
                "order_code": "AUFTRAG_NR",
                "machine_code": "MASCH_NR",
                "product_code": "ART_NR",
                "event": "BUCH_ART",
                "filters": {"STORNO": True, "WERK": False},
            },
            codes1,
            True,
            SPRING,
            1,
        )
    )
    # 2. an English ERP order table in CamelCase, surrogate key, status with a deleted value
    out.append(
        Vendor(
            "ProductionOrders",
            "postgresql",
            "English ERP CamelCase",
            "orders",
            [
                ("OrderID", "serial"),
                ("OrderNumber", "text(16)"),
                ("OperationNo", "int"),
                ("WrkCtr", "text(10)"),
                ("PartNum", "text(20)"),
                ("PlannedQty", "int"),
                ("ActualStart", "timestamp"),
                ("ActualEnd", "timestamp"),
                ("Status", "text(6)"),
                ("LastModified", "timestamp"),
                ("Plant", "text(4)"),
            ],
            lambda r, local: {
                "OrderNumber": f"WO-26-{r.order:05d}",
                "OperationNo": r.operation,
                "WrkCtr": f"WC-{r.machine}0",
                "PartNum": r.product,
                "PlannedQty": 500,
                "ActualStart": wall(r.start, local),
                "ActualEnd": wall(r.end, local),
                "Status": "DLT" if r.cancelled else ("REL" if r.end is None else "CNF"),
                "LastModified": wall((r.end or r.start) + timedelta(minutes=3), local),
                "Plant": f"P{r.plant}",
            },
            {
                "start": "ActualStart",
                "end": "ActualEnd",
                "order_code": "OrderNumber",
                "machine_code": "WrkCtr",
                "product_code": "PartNum",
                "updated_at": "LastModified",
                "filters": {"Status": True, "Plant": False},
            },
            {},
            True,
            AUTUMN,
            2,
        )
    )
    # 3. an Italian BDE on MariaDB: DD.MM.YYYY text + HH:MM:SS text, 3-letter codes, S/N flag
    codes3 = {
        "start": "INI",
        "pause": "SOS",
        "resume": "RIP",
        "qty": "QTA",
        "end": "FIN",
        "rare": "SCA",
    }
    out.append(
        Vendor(
            "REGISTRAZIONI_BDE",
            "mariadb",
            "Italian BDE",
            "bookings",
            [
                ("ID", "serial"),
                ("STABILIMENTO", "text(10)"),
                ("MACCHINA", "text(12)"),
                ("NUM_ORDINE", "text(12)"),
                ("ARTICOLO", "text(20)"),
                ("CAUSALE", "char(3)"),
                ("DATA_REG", "char(10)"),
                ("ORA_REG", "char(8)"),
                ("QUANTITA", "int"),
                ("ANNULLATO", "char(1)"),
            ],
            lambda e, local: {
                "STABILIMENTO": f"STAB{e.plant}",
                "MACCHINA": f"PRESSA_{e.machine}",
                "NUM_ORDINE": f"ODP26{e.order:05d}",
                "ARTICOLO": e.product,
                "CAUSALE": codes3[e.kind],
                "DATA_REG": f"{wall(e.at, local):%d.%m.%Y}",
                "ORA_REG": f"{wall(e.at, local):%H:%M:%S}",
                "QUANTITA": e.qty,
                "ANNULLATO": _flag(e.cancelled, "S", "N"),
            },
            {
                "timestamp": ("DATA_REG", "ORA_REG"),
                "order_code": "NUM_ORDINE",
                "machine_code": "MACCHINA",
                "product_code": "ARTICOLO",
                "event": "CAUSALE",
                "filters": {"ANNULLATO": True, "STABILIMENTO": False},
            },
            codes3,
            True,
            SPRING,
            3,
        )
    )
    # 4. a French shop-floor table: DATETIME, word codes, 0/1 flag, operator as a distractor
    codes4 = {
        "start": "DEBUT",
        "pause": "ARRET",
        "resume": "REPRISE",
        "qty": "PRODUCTION",
        "end": "FIN",
        "rare": "REBUT",
    }
    out.append(
        Vendor(
            "saisies_atelier",
            "mariadb",
            "French MES",
            "bookings",
            [
                ("id", "serial"),
                ("usine", "text(8)"),
                ("poste_charge", "text(10)"),
                ("num_of", "text(12)"),
                ("reference_article", "text(20)"),
                ("type_saisie", "text(12)"),
                ("horodatage", "timestamp"),
                ("quantite", "int"),
                ("operateur", "text(8)"),
                ("annulee", "bool"),
            ],
            lambda e, local: {
                "usine": f"U{e.plant}",
                "poste_charge": f"PC{e.machine}",
                "num_of": f"OF-{e.order:06d}",
                "reference_article": e.product,
                "type_saisie": codes4[e.kind],
                "horodatage": wall(e.at, local),
                "quantite": e.qty,
                "operateur": f"OP{e.operator}",
                "annulee": int(e.cancelled),
            },
            {
                "timestamp": ("horodatage",),
                "order_code": "num_of",
                "machine_code": "poste_charge",
                "product_code": "reference_article",
                "event": "type_saisie",
                "filters": {"annulee": True, "usine": False},
            },
            codes4,
            True,
            AUTUMN,
            4,
        )
    )
    # 5. a Spanish order table stored in UTC, surrogate id, status with ANULADA
    out.append(
        Vendor(
            "ordenes_fabricacion",
            "postgresql",
            "Spanish ERP (UTC)",
            "orders",
            [
                ("id", "serial"),
                ("numero_orden", "text(12)"),
                ("maquina", "text(10)"),
                ("codigo_producto", "text(20)"),
                ("fecha_inicio", "timestamp"),
                ("fecha_fin", "timestamp"),
                ("estado", "text(12)"),
                ("planta", "text(10)"),
                ("cantidad", "int"),
            ],
            lambda r, local: {
                "numero_orden": f"{r.order:07d}-{r.operation}",
                "maquina": f"MAQ{r.machine}",
                "codigo_producto": r.product,
                "fecha_inicio": wall(r.start, local),
                "fecha_fin": wall(r.end, local),
                "estado": "ANULADA"
                if r.cancelled
                else ("EN_CURSO" if r.end is None else "TERMINADA"),
                "planta": f"PLANTA{r.plant}",
                "cantidad": r.qty,
            },
            {
                "start": "fecha_inicio",
                "end": "fecha_fin",
                "order_code": "numero_orden",
                "machine_code": "maquina",
                "product_code": "codigo_producto",
                "filters": {"estado": True, "planta": False},
                "zone": "utc",
            },
            {},
            False,
            SPRING,
            5,
        )
    )
    # 6. a Polish table: text YYYYMMDD + text HHMMSS, integer codes, T/N flag
    codes6 = {"start": 1, "pause": 2, "resume": 3, "qty": 5, "end": 9, "rare": 7}
    out.append(
        Vendor(
            "rejestr_produkcji",
            "mariadb",
            "Polish MES",
            "bookings",
            [
                ("id", "serial"),
                ("zaklad", "text(6)"),
                ("maszyna", "text(10)"),
                ("nr_zlecenia", "text(12)"),
                ("indeks_wyrobu", "text(20)"),
                ("kod_zdarzenia", "int"),
                ("data_zd", "char(8)"),
                ("godzina_zd", "char(6)"),
                ("ilosc", "int"),
                ("anulowane", "char(1)"),
            ],
            lambda e, local: {
                "zaklad": f"Z{e.plant}",
                "maszyna": f"MASZ-{e.machine}",
                "nr_zlecenia": f"ZL/{e.order}",
                "indeks_wyrobu": e.product,
                "kod_zdarzenia": codes6[e.kind],
                "data_zd": f"{wall(e.at, local):%Y%m%d}",
                "godzina_zd": f"{wall(e.at, local):%H%M%S}",
                "ilosc": e.qty,
                "anulowane": _flag(e.cancelled, "T", "N"),
            },
            {
                "timestamp": ("data_zd", "godzina_zd"),
                "order_code": "nr_zlecenia",
                "machine_code": "maszyna",
                "product_code": "indeks_wyrobu",
                "event": "kod_zdarzenia",
                "filters": {"anulowane": True, "zaklad": False},
            },
            codes6,
            True,
            AUTUMN,
            6,
        )
    )
    # 7. a Czech table: integer date 20260329 + integer time 61530, word codes, A/N flag, int order code
    codes7 = {
        "start": "ZAHAJENI",
        "pause": "PRERUSENI",
        "resume": "POKRACOVANI",
        "qty": "HLASENI",
        "end": "UKONCENI",
        "rare": "ZMETEK",
    }
    out.append(
        Vendor(
            "hlaseni_vyroby",
            "postgresql",
            "Czech MES",
            "bookings",
            [
                ("id", "serial"),
                ("zavod", "text(6)"),
                ("pracoviste", "text(10)"),
                ("cislo_zakazky", "int"),
                ("material", "text(20)"),
                ("udalost", "text(12)"),
                ("datum", "int"),
                ("cas", "int"),
                ("mnozstvi", "int"),
                ("stornovano", "char(1)"),
            ],
            lambda e, local: {
                "zavod": f"ZAV{e.plant}",
                "pracoviste": f"PRAC{e.machine}",
                "cislo_zakazky": 26000000 + e.order,
                "material": e.product,
                "udalost": codes7[e.kind],
                "datum": int(f"{wall(e.at, local):%Y%m%d}"),
                "cas": int(f"{wall(e.at, local):%H%M%S}"),
                "mnozstvi": e.qty,
                "stornovano": _flag(e.cancelled, "A", "N"),
            },
            {
                "timestamp": ("datum", "cas"),
                "order_code": "cislo_zakazky",
                "machine_code": "pracoviste",
                "product_code": "material",
                "event": "udalost",
                "filters": {"stornovano": True, "zavod": False},
            },
            codes7,
            True,
            SPRING,
            7,
        )
    )
    # 8. a Dutch order table: key (ordernummer, bewerking), 0/1 deleted flag, changed-at column
    out.append(
        Vendor(
            "productieorders",
            "mariadb",
            "Dutch ERP",
            "orders",
            [
                ("ordernummer", "text(10)"),
                ("bewerking", "int"),
                ("werkplek", "text(10)"),
                ("artikelcode", "text(20)"),
                ("starttijd", "timestamp"),
                ("eindtijd", "timestamp"),
                ("aantal", "int"),
                ("verwijderd", "bool"),
                ("gewijzigd_op", "timestamp"),
            ],
            lambda r, local: {
                "ordernummer": f"PO{r.order:06d}",
                "bewerking": r.operation,
                "werkplek": f"WP{r.machine}",
                "artikelcode": r.product,
                "starttijd": wall(r.start, local),
                "eindtijd": wall(r.end, local),
                "aantal": r.qty,
                "verwijderd": int(r.cancelled),
                "gewijzigd_op": wall((r.end or r.start) + timedelta(minutes=7), local),
            },
            {
                "start": "starttijd",
                "end": "eindtijd",
                "order_code": "ordernummer",
                "machine_code": "werkplek",
                "product_code": "artikelcode",
                "updated_at": "gewijzigd_op",
                "filters": {"verwijderd": True},
            },
            {},
            True,
            AUTUMN,
            8,
            primary_key=("ordernummer", "bewerking"),
        )
    )
    # 9. a Portuguese table in UTC: TIMESTAMP, letter codes, S/N flag
    codes9 = {"start": "I", "pause": "P", "resume": "R", "qty": "Q", "end": "F", "rare": "X"}
    out.append(
        Vendor(
            "apontamentos",
            "postgresql",
            "Portuguese MES (UTC)",
            "bookings",
            [
                ("id", "serial"),
                ("planta", "text(6)"),
                ("maquina", "text(10)"),
                ("ordem_producao", "text(12)"),
                ("produto", "text(20)"),
                ("evento", "char(1)"),
                ("data_hora", "timestamp"),
                ("quantidade", "int"),
                ("cancelado", "char(1)"),
            ],
            lambda e, local: {
                "planta": f"PL{e.plant}",
                "maquina": f"MQ{e.machine}",
                "ordem_producao": f"OP-{e.order}",
                "produto": e.product,
                "evento": codes9[e.kind],
                "data_hora": wall(e.at, local),
                "quantidade": e.qty,
                "cancelado": _flag(e.cancelled, "S", "N"),
            },
            {
                "timestamp": ("data_hora",),
                "order_code": "ordem_producao",
                "machine_code": "maquina",
                "product_code": "produto",
                "event": "evento",
                "filters": {"cancelado": True, "planta": False},
                "zone": "utc",
            },
            codes9,
            False,
            AUTUMN,
            9,
        )
    )
    # 10. SAP AFRU-like confirmations on MariaDB: text YYYYMMDD/HHMMSS pairs, '00000000' while open, STOKZ X/blank
    out.append(
        Vendor(
            "AFRU",
            "mariadb",
            "SAP PP confirmations",
            "orders",
            [
                ("MANDT", "char(3)"),
                ("RUECK", "char(10)"),
                ("RMZHL", "char(8)"),
                ("AUFNR", "char(12)"),
                ("WERKS", "char(4)"),
                ("ARBPL", "char(8)"),
                ("ISDD", "char(8)"),
                ("ISDZ", "char(6)"),
                ("IEDD", "char(8)"),
                ("IEDZ", "char(6)"),
                ("LMNGA", "decimal(13,3)"),
                ("STOKZ", "char(1)"),
            ],
            lambda r, local: {
                "MANDT": "100",
                "RUECK": f"{r.order * 7 % 9999999:010d}",
                "RMZHL": f"{r.operation:08d}",
                "AUFNR": f"{r.order:012d}",
                "WERKS": f"{r.plant}000",
                "ARBPL": f"AP{r.machine}",
                "ISDD": f"{wall(r.start, local):%Y%m%d}",
                "ISDZ": f"{wall(r.start, local):%H%M%S}",
                "IEDD": f"{wall(r.end, local):%Y%m%d}" if r.end else "00000000",
                "IEDZ": f"{wall(r.end, local):%H%M%S}" if r.end else "000000",
                "LMNGA": r.qty,
                "STOKZ": "X" if r.cancelled else " ",
            },
            {
                "start": ("ISDD", "ISDZ"),
                "end": ("IEDD", "IEDZ"),
                "order_code": "AUFNR",
                "machine_code": "ARBPL",
                "filters": {"STOKZ": True, "WERKS": False},
            },
            {},
            True,
            SPRING,
            10,
            primary_key=("MANDT", "RUECK", "RMZHL"),
        )
    )
    # 11. an AS/400 physical file: short names, integer date + time, 2-letter codes, sequence number
    codes11 = {"start": "ST", "pause": "DN", "resume": "UP", "qty": "QT", "end": "CP", "rare": "RW"}
    out.append(
        Vendor(
            "PRDTRNP",
            "postgresql",
            "AS/400 file",
            "bookings",
            [
                ("TRNSEQ", "int"),
                ("WHSNO", "char(3)"),
                ("MCHNO", "char(10)"),
                ("ORDNO", "char(10)"),
                ("ITNO", "char(15)"),
                ("TRNCD", "char(2)"),
                ("TRNDT", "int"),
                ("TRNTM", "int"),
                ("TRNQTY", "int"),
                ("DLTFL", "char(1)"),
            ],
            None,  # set below: needs a running sequence
            {
                "timestamp": ("TRNDT", "TRNTM"),
                "order_code": "ORDNO",
                "machine_code": "MCHNO",
                "product_code": "ITNO",
                "event": "TRNCD",
                "filters": {"DLTFL": True, "WHSNO": False},
            },
            codes11,
            True,
            AUTUMN,
            11,
        )
    )
    seq = iter(range(1, 10**9))
    out[-1].row = lambda e, local: {
        "TRNSEQ": next(seq),
        "WHSNO": f"W{e.plant}",
        "MCHNO": f"MC{e.machine}",
        "ORDNO": f"{e.order:07d}",
        "ITNO": e.product,
        "TRNCD": codes11[e.kind],
        "TRNDT": int(f"{wall(e.at, local):%Y%m%d}"),
        "TRNTM": int(f"{wall(e.at, local):%H%M%S}"),
        "TRNQTY": e.qty,
        "DLTFL": "D" if e.cancelled else " ",
    }
    # 12. a Windows MES with Hungarian-prefixed names, integer codes, UTC, 0/1 deleted
    codes12 = {"start": 1, "pause": 2, "resume": 3, "qty": 4, "end": 5, "rare": 8}
    out.append(
        Vendor(
            "tblMachineEvents",
            "mariadb",
            "Hungarian-prefixed (UTC)",
            "bookings",
            [
                ("lngEventID", "serial"),
                ("strPlant", "text(6)"),
                ("strMachine", "text(10)"),
                ("strOrderNo", "text(12)"),
                ("strPartNo", "text(20)"),
                ("intEventType", "int"),
                ("dtmEventTime", "timestamp"),
                ("lngQuantity", "int"),
                ("blnDeleted", "bool"),
            ],
            lambda e, local: {
                "strPlant": f"PL{e.plant}",
                "strMachine": f"MACH{e.machine}",
                "strOrderNo": f"{e.order}",
                "strPartNo": e.product,
                "intEventType": codes12[e.kind],
                "dtmEventTime": wall(e.at, local),
                "lngQuantity": e.qty,
                "blnDeleted": int(e.cancelled),
            },
            {
                "timestamp": ("dtmEventTime",),
                "order_code": "strOrderNo",
                "machine_code": "strMachine",
                "product_code": "strPartNo",
                "event": "intEventType",
                "filters": {"blnDeleted": True, "strPlant": False},
                "zone": "utc",
            },
            codes12,
            False,
            SPRING,
            12,
        )
    )
    # 13. an English MES view with pause/resume words (the case that gave 206 runs instead of 1,212)
    codes13 = {
        "start": "START",
        "pause": "PAUSE",
        "resume": "RESUME",
        "qty": "COUNT",
        "end": "COMPLETE",
        "rare": "SCRAP_ADJ",
    }
    out.append(
        Vendor(
            "v_mes_events",
            "postgresql",
            "English MES view",
            "bookings",
            [
                ("event_id", "bigint"),
                ("site", "text(6)"),
                ("work_center", "text(10)"),
                ("work_order", "text(12)"),
                ("item", "text(20)"),
                ("event_type", "text(10)"),
                ("event_time", "timestamp"),
                ("qty", "int"),
                ("operator_badge", "text(8)"),
                ("is_cancelled", "bool"),
            ],
            None,
            {
                "timestamp": ("event_time",),
                "order_code": "work_order",
                "machine_code": "work_center",
                "product_code": "item",
                "event": "event_type",
                "filters": {"is_cancelled": True, "site": False},
            },
            codes13,
            True,
            AUTUMN,
            13,
            view=True,
        )
    )
    ids = iter(range(5_000_001, 10**9, 3))
    out[-1].row = lambda e, local: {
        "event_id": next(ids),
        "site": f"S{e.plant}",
        "work_center": f"WC{e.machine}",
        "work_order": f"WO{e.order}",
        "item": e.product,
        "event_type": codes13[e.kind],
        "event_time": wall(e.at, local),
        "qty": e.qty,
        "operator_badge": f"B{e.operator}",
        "is_cancelled": e.cancelled,
    }
    # 14. a German order table on MariaDB with DATE + TIME pairs for start and end, J/N deleted
    out.append(
        Vendor(
            "FERTIGUNGSAUFTRAG",
            "mariadb",
            "German ERP orders (pairs)",
            "orders",
            [
                ("FA_ID", "serial"),
                ("AUFTRAGSNUMMER", "text(12)"),
                ("MASCHINE", "text(10)"),
                ("ARTIKEL", "text(20)"),
                ("START_DATUM", "date"),
                ("START_UHRZEIT", "time"),
                ("ENDE_DATUM", "date"),
                ("ENDE_UHRZEIT", "time"),
                ("GELOESCHT", "char(1)"),
                ("GEAENDERT_AM", "timestamp"),
            ],
            lambda r, local: {
                "AUFTRAGSNUMMER": f"FA{r.order:06d}/{r.operation}",
                "MASCHINE": f"MA{r.machine}",
                "ARTIKEL": r.product,
                "START_DATUM": wall(r.start, local).date(),
                "START_UHRZEIT": wall(r.start, local).time(),
                "ENDE_DATUM": wall(r.end, local).date() if r.end else None,
                "ENDE_UHRZEIT": wall(r.end, local).time() if r.end else None,
                "GELOESCHT": _flag(r.cancelled, "J", "N"),
                "GEAENDERT_AM": wall((r.end or r.start) + timedelta(minutes=2), local),
            },
            {
                "start": ("START_DATUM", "START_UHRZEIT"),
                "end": ("ENDE_DATUM", "ENDE_UHRZEIT"),
                "order_code": "AUFTRAGSNUMMER",
                "machine_code": "MASCHINE",
                "product_code": "ARTIKEL",
                "updated_at": "GEAENDERT_AM",
                "filters": {"GELOESCHT": True},
            },
            {},
            True,
            SPRING,
            14,
        )
    )
    # 15. a German BDE with one quantity booking per order between START and END (a single
    # good-quantity or "setup finished" booking), two END codes, an integer cancellation flag
    # that is NULL on most rows, and a text timestamp
    codes15 = {"start": 1, "qty": 5, "end": 2, "abort": 3}
    out.append(
        Vendor(
            "bde_maschinenbuchung",
            "postgresql",
            "German BDE, one booking mid-run",
            "bookings",
            [
                ("lfd_nr", "serial"),
                ("werk", "text(4)"),
                ("maschine", "text(10)"),
                ("auftrag", "text(12)"),
                ("artikel", "text(20)"),
                ("buchungsart", "smallint"),
                ("buchungszeit", "text(19)"),
                ("storno", "int"),
                ("menge", "int"),
            ],
            lambda e, local: {
                "werk": f"W{e.plant}",
                "maschine": f"PRESSE{e.machine}",
                "auftrag": f"5{e.order:05d}",
                "artikel": e.product,
                "buchungsart": codes15["abort"]
                if e.kind == "end" and e.order % 3 == 0
                else codes15[e.kind],
                "buchungszeit": f"{wall(e.at, local):%Y-%m-%d %H:%M:%S}",
                # cancelled: 1; otherwise 0 on a third of the rows and NULL on the rest
                "storno": 1 if e.cancelled else (0 if (e.order + e.operator) % 3 == 0 else None),
                "menge": e.qty,
            },
            {
                "timestamp": ("buchungszeit",),
                "order_code": "auftrag",
                "machine_code": "maschine",
                "product_code": "artikel",
                "event": "buchungsart",
                "filters": {"storno": True, "werk": False},
                "filter_specs": {"storno": {"column": "storno", "ne": 1}},
            },
            codes15,
            True,
            AUTUMN,
            15,
            select=_one_booking_mid_run,
        )
    )
    # 16. a German order table whose order number is its primary key (unique per row, as in
    # every order table) and whose status says finished/open
    out.append(
        Vendor(
            "fa_auftrag",
            "postgresql",
            "German ERP orders (order number key)",
            "orders",
            [
                ("auftragsnr", "text(12)"),
                ("maschine", "text(10)"),
                ("artikel", "text(20)"),
                ("start_zeit", "timestamp"),
                ("ende_zeit", "timestamp"),
                ("status", "text(10)"),
            ],
            lambda r, local: {
                "auftragsnr": f"5{r.order:05d}{r.operation // 10}",
                "maschine": f"PRESSE{r.machine}",
                "artikel": r.product,
                "start_zeit": wall(r.start, local),
                "ende_zeit": wall(r.end, local),
                "status": "offen" if r.end is None else "fertig",
            },
            {
                "start": "start_zeit",
                "end": "ende_zeit",
                "order_code": "auftragsnr",
                "machine_code": "maschine",
                "product_code": "artikel",
                "no_filter": ["status"],
            },
            {},
            True,
            AUTUMN,
            16,
            primary_key=("auftragsnr",),
            select=lambda runs: [r for r in runs if not r.cancelled],
        )
    )
    # 17. the same BDE on MariaDB: DD.MM.YYYY text timestamp, a NOT NULL tinyint flag
    codes17 = {"start": 1, "qty": 5, "end": 2, "abort": 3}
    out.append(
        Vendor(
            "BDE_MASCHBUCH",
            "mariadb",
            "German BDE, one booking mid-run, text times",
            "bookings",
            [
                ("LFDNR", "serial"),
                ("WERK", "text(4)"),
                ("MASCHINE", "text(10)"),
                ("AUFTRAG", "text(12)"),
                ("ARTIKEL", "text(20)"),
                ("BUCHART", "int"),
                ("ZEITSTEMPEL", "text(19)"),
                ("STORNO", "tinyint"),
                ("MENGE", "decimal(10,2)"),
            ],
            lambda e, local: {
                "WERK": f"W{e.plant}",
                "MASCHINE": f"SPRITZ{e.machine}",
                "AUFTRAG": f"6{e.order:05d}",
                "ARTIKEL": e.product,
                "BUCHART": codes17["abort"]
                if e.kind == "end" and e.order % 3 == 1
                else codes17[e.kind],
                "ZEITSTEMPEL": f"{wall(e.at, local):%d.%m.%Y %H:%M:%S}",
                "STORNO": int(e.cancelled),
                "MENGE": e.qty,
            },
            {
                "timestamp": ("ZEITSTEMPEL",),
                "order_code": "AUFTRAG",
                "machine_code": "MASCHINE",
                "product_code": "ARTIKEL",
                "event": "BUCHART",
                "filters": {"STORNO": True, "WERK": False},
                "filter_specs": {"STORNO": {"column": "STORNO", "ne": 1}},
            },
            codes17,
            True,
            SPRING,
            17,
            select=_one_booking_mid_run,
        )
    )
    return out


def _one_booking_mid_run(events: list[Event]) -> list[Event]:
    """START, END and only the first quantity report of each order (no pauses, no rare codes)."""
    seen: set[int] = set()
    out = []
    for e in events:  # in time order
        if e.kind in ("start", "end"):
            out.append(e)
        elif e.kind == "qty" and e.order not in seen:
            seen.add(e.order)
            out.append(e)
    return out


# ------------------------------------------------------------------------------ scoring


@dataclass
class Score:
    """Decisions right out of total for one table, and what went wrong."""

    table: str
    right: int = 0
    total: int = 0
    wrong: list[str] = field(default_factory=list)

    def check(self, what: str, ok: bool, detail: str) -> None:
        self.total += 1
        if ok:
            self.right += 1
        else:
            self.wrong.append(f"{self.table}: {what}: {detail}")


def score(vendor: Vendor, proposal: Any) -> Score:
    """Compare a Proposal with the vendor's expected decisions (column names compared case-blind)."""
    s = Score(vendor.name)
    low = lambda cols: tuple(c.lower() for c in cols)  # noqa: E731
    s.check(
        "structure",
        proposal.structure == vendor.structure,
        f"{proposal.structure} (expected {vendor.structure})",
    )
    roles = (
        "timestamp",
        "start",
        "end",
        "order_code",
        "machine_code",
        "product_code",
        "event",
        "updated_at",
    )
    for role in roles:
        want = vendor.expected.get(role)
        spec = proposal.columns.get(role)
        got = tuple(spec.source_columns()) if spec is not None else ()
        if want is None and not got:
            continue
        want_t = (want,) if isinstance(want, str) else tuple(want or ())
        s.check(
            role,
            low(got) == low(want_t),
            f"{', '.join(got) or 'none'} (expected {', '.join(want_t) or 'none'})",
        )
    if vendor.structure == "bookings":
        kinds = {
            "start": "START",
            "resume": "START",
            "pause": "END",
            "end": "END",
            "abort": "END",
            "qty": "ignore",
            "rare": None,
        }
        listed = {str(c): k for k, codes in proposal.events.items() for c in codes}
        for kind, code in vendor.codes.items():
            got = listed.get(str(code))
            s.check(
                f"code {code} ({kind})",
                got == kinds[kind],
                f"{got or 'unlisted'} (expected {kinds[kind] or 'unlisted'})",
            )
    proposed = {f.column.lower(): f for f in proposal.filters}
    for column, active in vendor.expected.get("filters", {}).items():
        f = proposed.pop(column.lower(), None)
        ok = f is not None and f.active == active
        s.check(
            f"filter {column}",
            ok,
            "missing" if f is None else f"active={f.active} (expected {active})",
        )
    for extra in proposed.values():
        if extra.active:
            s.check(f"filter {extra.column}", False, "proposed active, not expected")
        elif extra.column.lower() in {c.lower() for c in vendor.expected.get("no_filter", ())}:
            s.check(f"filter {extra.column}", False, f"proposed as a {extra.kind}, not a filter")
    for column, want in vendor.expected.get("filter_specs", {}).items():
        got_spec = next(
            (f.filter for f in proposal.filters if f.column.lower() == column.lower()), None
        )
        # compared with types: ne: 1 on an integer column is not ne: '1'
        same = got_spec is not None and {k: (type(v), v) for k, v in got_spec.items()} == {
            k: (type(v), v) for k, v in want.items()
        }
        s.check(f"filter {column} as written", same, f"{got_spec} (expected {want})")
    zone = vendor.expected.get("zone", "local")
    got_zone = proposal.zone.verdict if proposal.zone is not None else "none"
    s.check("time zone", got_zone == zone, f"{got_zone} (expected {zone})")
    return s


def true_runs(vendor: Vendor) -> int:
    """How many runs the history holds as the vendor's table shows it, after its cancellation
    filter: bookings folded with the real fold (start/resume open, pause/end close, rare codes
    dropped); order rows counted."""
    import pandas as pd

    from etl.pipeline.fold import fold

    records = vendor.records()
    if vendor.structure == "orders":
        return sum(1 for r in records if not r.cancelled)
    kind = {"start": "START", "resume": "START", "pause": "END", "end": "END"}
    kept = [e for e in records if not e.cancelled and e.kind in kind]
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([e.at for e in kept]).tz_localize("UTC"),
            "machine_code": pd.array([e.machine for e in kept], dtype="string"),
            "order_code": pd.array([str(e.order) for e in kept], dtype="string"),
            "product_code": pd.array([e.product for e in kept], dtype="string"),
            "event": pd.array([kind[e.kind] for e in kept], dtype="string"),
        }
    )
    return len(fold(frame).runs)
