"""Column names as a second signal: words for each role in German, English, French, Italian,
Spanish, Polish, Czech, Dutch and Portuguese, plus SAP, AS/400 and Hungarian-prefixed styles.

A name is split into tokens (``WrkCtr`` -> wrk, ctr; ``strOrderNo`` -> order, no; ``NUM_ORDINE`` ->
num, ordine); the Hungarian type prefix (str, lng, dtm, ...) is dropped. A role's long stems match
the start of a token or of the whole name without separators (``AUFTRAGSNUMMER``); its short
stems (<= 3 letters) only match a whole token or the whole name plus a No/Nr/Id suffix (``ORDNO``).
"""

from __future__ import annotations

import re


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


STEMS: dict[str, tuple[str, ...]] = {
    "order_code": _w(
        # en de sap fr it es pt pl cs nl; as/400 short forms
        "order workorder wo job auftrag auftr aufnr aunr fauf fa ba pa ordre of "
        "ordine commessa odp orden ordem op zlecen zlec zakazk prikaz opdracht "
        "ord ordno ordnr"
    ),
    "machine_code": _w(
        "machine mach masch mchn mch mc arbpl arbeitsplatz ap wc wrkctr workcenter work "
        "center resource ressource res line linie anlage equipment equip eqp station "
        "macchina macc centro poste maquina maq maszyn stanowisk stroj pracovist werkplek "
        "posto linha equipamento"
    ),
    "product_code": _w(
        "product prd part partnum item itm itno sku material matnr mat artikel art artnr "
        "articolo article produit producto produkt indeks wyrob vyrobek produto teil sachnr "
        "referenc codart"
    ),
    "event": _w(
        "event evt ev type typ kind action buchart buchungsart satzart kenn kennung ereignis "
        "vorgang causale evento tipo evenement zdarzen udalost gebeurtenis soort trncd trn "
        "acao booking bwart rec"
    ),
    "timestamp": _w(
        "timestamp ts time zeit zeitpunkt zeitstempel datetime dt dtm stamp horodatage "
        "datahora fecha hora czas cas tijd tijdstip ora momento booked buchung"
    ),
    "date": _w(
        "date datum dat data fecha day tag jour giorno dia dzien den isdd budat ersda trndt dt"
    ),
    "time": _w("time zeit uhrzeit uzeit heure ora hora godzina czas cas tijd isdz erzet trntm tm"),
    "start": _w(
        "start begin beginn von inizio debut inicio poczatek zacatek aanvang ist isdd started from"
    ),
    "end": _w(
        "end ende bis fine fin final koniec konec eind einde stop finish iedd ended to "
        "termino zakonczen"
    ),
    "updated_at": _w(
        "upd updated modified mod changed chg change aedat geaendert aenderung geandert "
        "modifica aggiornat modif actualiz modificad zmian zmien zmenen gewijzigd bijgewerkt "
        "alterad atualiz lastmodified last letzte"
    ),
    "plant": _w(
        "plant werk werks site standort stabilimento usine planta fabrica zaklad zavod "
        "fabriek vestiging unidade whs warehouse sede"
    ),
    "cancel": _w(
        "storno stokz storn cancel cncl deleted delete del dlt dltfl loekz loesch geloescht "
        "annull annul anul cancelad usun anulow zrus verwijder geannuleerd void removed "
        "elimin borrad"
    ),
    "active": _w("active aktiv valid gueltig attivo actif activo aktywn platn actief ativo"),
    "status": _w("status stat sts state stato statut estado stan stav zustand"),
}
HUNGARIAN = frozenset(_w("str lng int dtm dt bln b sz n dbl cur sng by w tbl fld"))
SUFFIXES = ("no", "nr", "num", "number", "id", "cd", "code", "nummer", "numero", "key")
TIME_WORDS = frozenset(
    _w(
        "dat date datum data zeit time uhrzeit ts tm tijd ora hora heure czas cas godzina "
        "fecha tag day isdd isdz"
    )
)


def tokens(name: str) -> list[str]:
    """``strOrderNo`` -> ['order', 'no']; ``NUM_ORDINE`` -> ['num', 'ordine']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced)
    out = [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]
    if len(out) > 1 and out[0] in HUNGARIAN:
        out = out[1:]
    return out


def name_score(name: str, role: str) -> float:
    """How well a column name fits a role, 0..1 (1: a whole-token match of a role word)."""
    stems = STEMS[role]
    toks = tokens(name)
    if not toks:
        return 0.0
    compact = "".join(toks)
    best = 0.0
    for stem in stems:
        short = len(stem) <= 3
        for tok in toks:
            if tok == stem:
                best = max(best, 1.0)
            elif role in ("date", "time") and tok.endswith(stem) and len(tok) > len(stem) + 1:
                best = max(best, 0.7)  # BUCHDAT, ERZET
            elif not short and tok.startswith(stem):
                best = max(best, 0.8)
            elif short and any(tok == stem + s for s in SUFFIXES):
                best = max(best, 0.9)
        if not short and stem in compact and len(stem) >= 4:
            best = max(best, 0.6)
        if short and any(compact == stem + s for s in SUFFIXES):
            best = max(best, 0.9)
    return best


def strip_time_words(name: str) -> str:
    """The name's tokens without date/time words, joined: a stem shared by a date + time pair."""
    toks = tokens(name)
    kept = [t for t in toks if t not in TIME_WORDS]
    compact = "".join(kept)
    for word in sorted(TIME_WORDS, key=len, reverse=True):
        if compact.endswith(word) and len(compact) > len(word) + 1:
            return compact[: -len(word)]
        if compact.startswith(word) and len(compact) > len(word) + 1:
            return compact[len(word) :]
    return compact


CANCEL_VALUES = frozenset(
    _w(
        "del deleted dlt delete storno storniert cancel cancelled canceled canc cnl cncl loe "
        "geloescht gelöscht annullato annullata ann annule annulé annulee annulée anulado "
        "anulada cancelado cancelada usuniety usunięty anulowane anulowany anulowano zruseno "
        "zrušeno stornovano stornováno verwijderd geannuleerd void dlt d x"
    )
)
# (set, unset) spellings of a yes/no flag; the set value means "this row is cancelled"
FLAG_PAIRS = (
    ("1", "0"),
    ("true", "false"),
    ("t", "f"),
    ("s", "n"),
    ("j", "n"),
    ("y", "n"),
    ("x", ""),
    ("o", "n"),
    ("t", "n"),
    ("a", "n"),
    ("si", "no"),
    ("yes", "no"),
    ("ja", "nein"),
    ("-1", "0"),
)
