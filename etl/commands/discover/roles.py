"""Column roles from the values, names as a second signal.

Each role is scored from evidence in the sample, then the best column (or time field) per role
is taken, most confident first, each column once:

* times: datetime columns and date + time pairs (profile.time_fields); a start/end pair whose end
  is never before its start and that is hours apart makes an order table;
* order code: repeats (an order groups a few events), its rows lie close together in time, it
  determines the machine; never a surrogate key (profile._surrogate);
* machine: determined by the order, its orders never overlap in time, fewer values than orders;
* product: determined by the order, not by the machine;
* event: a handful of codes that change within one order;
* filters: a yes/no flag or status values that say cancelled/deleted; a plant the machine determines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from etl.commands.discover.profile import PRIMARY_KEY, Column, TimeField
from etl.commands.discover.vocabulary import CANCEL_VALUES, FLAG_PAIRS, name_score
from etl.config.models import ColumnSpec

NAME_WEIGHT = 0.35  # a perfect name adds this much to a value score of 0..1


@dataclass
class Decision:
    """One role and the column(s) that fill it, with why and how sure."""

    role: str
    spec: ColumnSpec
    why: str
    confidence: float

    def comment(self) -> str:
        """``name 'AUFNR'; 4.2 rows per value ... (confidence 90%)``."""
        return f"{self.why} ({self.confidence:.0%})"


@dataclass
class FilterProposal:
    """A filter worth setting: active when its intent is clear (cancelled, deleted)."""

    column: str
    kind: str  # "cancel", "status", "plant"
    filter: dict[str, Any]
    active: bool
    why: str
    values: list[tuple[Any, int]] = field(default_factory=list)


@dataclass
class Roles:
    """The structure and every role decided."""

    structure: str
    decisions: dict[str, Decision]
    filters: list[FilterProposal]
    notes: list[str]
    reference: TimeField | None


def decide(columns: list[Column], fields: list[TimeField], sample: pd.DataFrame) -> Roles:
    """Structure, roles and filters for one sampled table."""
    notes: list[str] = []
    codes = [c for c in columns if c.temporal is None or c.temporal.weak]
    codes = [c for c in codes if c.n and not c.fractional]
    pair = _start_end(fields)
    reference = _reference(fields, pair)
    ref = reference.naive if reference is not None else None
    # with a start/end pair the table may hold one row per order: its order number is then
    # unique per row, often the primary key, and still the order code
    order = _order(codes, ref, columns, keyed=pair is not None)
    decisions: dict[str, Decision] = {}
    used: set[str] = set()
    if order is not None:
        decisions["order_code"] = order
        used.add(order.spec.column or "")
    group = _col(columns, order.spec.column) if order else None
    event = _event(codes, group, used, ref)
    per_order = group.n / max(group.distinct, 1) if group else 1.0
    structure = "bookings"
    if pair is not None and (event is None or event.confidence < 0.5 or per_order < 1.6):
        structure = "orders"
    elif pair is None and not fields:
        notes.append("no datetime column or date + time pair recognised")
    if structure == "orders":
        assert pair is not None
        start, end, why = pair
        decisions["start"] = Decision("start", start.spec, f"{start.note}; {why}", 0.9)
        decisions["end"] = Decision("end", end.spec, f"{end.note}; never before the start", 0.9)
        used |= set(start.columns) | set(end.columns)
        ref = start.naive
        upd = _updated(fields, used)
        if upd is not None:
            decisions["updated_at"] = upd
            used |= set(upd.spec.source_columns())
    else:
        ts = _timestamp(fields, pair)
        if ts is not None:
            decisions["timestamp"] = ts
            used |= set(ts.spec.source_columns())
        if event is not None:
            decisions["event"] = event
            used.add(event.spec.column or "")
    machine = _machine(codes, group, used, ref)
    if machine is not None:
        decisions["machine_code"] = machine
        used.add(machine.spec.column or "")
    product = _product(codes, group, _col(columns, machine.spec.column) if machine else None, used)
    if product is not None:
        decisions["product_code"] = product
        used.add(product.spec.column or "")
    filters = _filters(
        columns, used, _col(columns, machine.spec.column) if machine else None, notes
    )
    return Roles(structure, decisions, filters, notes, reference)


def _col(columns: list[Column], name: str | None) -> Column | None:
    return next((c for c in columns if c.name == name), None)


# ---------------------------------------------------------------------------- times


def _start_end(fields: list[TimeField]) -> tuple[TimeField, TimeField, str] | None:
    """The best (start, end) pair: end never before start, hours apart, end NULL while open."""
    best: tuple[float, TimeField, TimeField, str] | None = None
    for a in fields:
        for b in fields:
            if a is b:
                continue
            both = a.naive.notna() & b.naive.notna()
            if both.sum() < 5:
                continue
            gap = (b.naive[both] - a.naive[both]).dt.total_seconds()
            ordered = float((gap >= 0).mean())
            median = float(gap.median())
            if ordered < 0.97 or median < 60:
                continue
            named = name_score(a.label, "start") + name_score(b.label, "end")
            named -= name_score(a.label, "updated_at") + name_score(b.label, "updated_at")
            open_share = float(b.naive.isna().mean() - a.naive.isna().mean())
            score = ordered + named + (0.3 if open_share > 0 else 0.0)
            why = f"end >= start in {ordered:.0%} of rows, median {median / 3600:.1f} h apart"
            if open_share > 0:
                why += f", {open_share:.0%} still open"
            if best is None or score > best[0]:
                best = (score, a, b, why)
    return None if best is None else best[1:]


def _reference(
    fields: list[TimeField], pair: tuple[TimeField, TimeField, str] | None
) -> TimeField | None:
    if pair is not None:
        return pair[0]
    return max(fields, key=lambda f: _time_score(f), default=None)


def _time_score(f: TimeField) -> float:
    named = max(name_score(c, "timestamp") for c in f.columns)
    named = max(named, max(name_score(c, "date") for c in f.columns) * 0.8)
    penalty = max(name_score(c, "updated_at") for c in f.columns)
    distinct = f.naive.nunique() / max(int(f.naive.notna().sum()), 1)
    return distinct + float(f.naive.notna().mean()) + NAME_WEIGHT * (named - 2 * penalty)


def _timestamp(
    fields: list[TimeField], pair: tuple[TimeField, TimeField, str] | None
) -> Decision | None:
    if not fields:
        return None
    ranked = sorted(fields, key=_time_score, reverse=True)
    best = ranked[0]
    why = best.note
    confidence = 0.9 if len(fields) == 1 else 0.75
    if len(ranked) > 1:
        why += f"; preferred to {ranked[1].label} (more distinct values or its name)"
    nulls = float(best.naive.isna().mean())
    if nulls:
        why += f"; {nulls:.1%} of sampled rows have none"
    return Decision("timestamp", best.spec, why, confidence)


def _updated(fields: list[TimeField], used: set[str]) -> Decision | None:
    rest = [f for f in fields if not set(f.columns) & used]
    named = [(max(name_score(c, "updated_at") for c in f.columns), f) for f in rest]
    named = [(s, f) for s, f in named if s > 0]
    if named:
        score, f = max(named, key=lambda p: p[0])
        return Decision("updated_at", f.spec, f"{f.note}; name says changed-at", 0.6 + 0.3 * score)
    return None


# ---------------------------------------------------------------------------- relations


def _purity(a: pd.Series, b: pd.Series) -> float:
    """Share of rows whose ``b`` is the most frequent ``b`` of their ``a``: 1 if a determines b."""
    frame = pd.DataFrame({"a": a, "b": b}).dropna()
    if frame.empty:
        return 0.0
    counts = frame.groupby(["a", "b"], sort=False, observed=True).size()
    top = counts.groupby(level=0, sort=False, observed=True).max()
    return float(top.sum() / len(frame))


def _clustered(values: pd.Series, ref: pd.Series | None) -> float:
    """How tightly a value's rows sit in time: 1 - median span per value / whole span."""
    if ref is None:
        return 0.5
    frame = pd.DataFrame({"v": values, "t": ref}).dropna()
    if len(frame) < 5:
        return 0.5
    whole = (frame["t"].max() - frame["t"].min()).total_seconds()
    if whole <= 0:
        return 0.5
    grouped = frame.groupby("v", sort=False, observed=True)["t"]
    spans = (grouped.max() - grouped.min()).dt.total_seconds()
    return float(1 - min(1.0, spans.median() / whole * 4))


def _overlap(machine: pd.Series, order: pd.Series, ref: pd.Series | None) -> float:
    """Share of (machine, order) intervals that overlap the previous one on the same machine."""
    if ref is None:
        return 0.5
    frame = pd.DataFrame({"m": machine, "o": order, "t": ref}).dropna()
    if len(frame) < 5:
        return 0.5
    spans = frame.groupby(["m", "o"], sort=False, observed=True)["t"].agg(["min", "max"])
    spans = spans.reset_index().sort_values(["m", "min"], kind="stable")
    same = spans["m"].eq(spans["m"].shift())
    previous_end = spans.groupby("m", sort=False, observed=True)["max"].cummax().shift()
    overlapping = same & (spans["min"] < previous_end)
    return float(overlapping.sum() / max(int(same.sum()), 1))


# ---------------------------------------------------------------------------- codes


def _pick(scored: list[tuple[float, Column, str]], role: str) -> Decision | None:
    if not scored:
        return None
    scored.sort(key=lambda s: -s[0])
    score, column, why = scored[0]
    if score < 0.3:
        return None
    named = name_score(column.name, role)
    if named:
        why += f"; name fits ({named:.0%})"
    if len(scored) > 1 and scored[1][0] > score - 0.1:
        why += f"; close to {scored[1][1].name}"
        score -= 0.1
    return Decision(role, ColumnSpec(column=column.name), why, min(0.99, max(0.3, score / 1.3)))


def _order(
    codes: list[Column], ref: pd.Series | None, columns: list[Column], keyed: bool = False
) -> Decision | None:
    """The order code; ``keyed``: a text primary key may be it (an order table's order number)."""
    scored = []
    for c in codes:
        allowed = keyed and c.surrogate == PRIMARY_KEY and not c.numeric
        if (c.surrogate and not allowed) or c.distinct < 2:
            continue
        if c.numeric and c.distinct < 0.01 * c.n:
            continue
        per = c.n / c.distinct
        if per < 1 or c.ratio < 0.002:
            continue
        # a few rows per order (bookings) or about one (order tables)
        shape = 1.0 if 1.5 <= per <= 40 else 0.7 if per < 1.5 else 0.3
        cluster = _clustered(c.text, ref)
        value = 0.6 * shape + 0.4 * cluster
        value += NAME_WEIGHT * name_score(c.name, "order_code")
        value -= NAME_WEIGHT * max(name_score(c.name, "product_code"), 0)
        scored.append((value, c, f"{per:.1f} rows per value, clustered in time ({cluster:.0%})"))
    decision = _pick(scored, "order_code")
    chosen = decision.spec.column if decision is not None else None
    skipped = [c.name for c in codes if c.surrogate and c.name != chosen]
    if decision is not None and skipped:
        decision.why += f"; not {', '.join(skipped)} (a surrogate key)"
    return decision


def _event(
    codes: list[Column], order: Column | None, used: set[str], ref: pd.Series | None
) -> Decision | None:
    scored = []
    for c in codes:
        if c.name in used or c.surrogate or not 2 <= c.distinct <= 40:
            continue
        if c.nulls > 0.5:
            continue
        varies = 1 - _purity(order.text, c.text) if order is not None else 0.5
        if varies < 0.1:
            continue
        # codes spread over several values (a flag is mostly one value)
        top = float(c.text.value_counts(normalize=True).iloc[0])
        spread = 1 - top
        value = min(1.0, varies * 1.5) * 0.7 + min(spread * 2, 1.0) * 0.3
        value += NAME_WEIGHT * name_score(c.name, "event")
        value -= NAME_WEIGHT * max(name_score(c.name, "cancel"), name_score(c.name, "status"))
        scored.append((value, c, f"{c.distinct} codes that change within an order ({varies:.0%})"))
    return _pick(scored, "event")


def _machine(
    codes: list[Column], order: Column | None, used: set[str], ref: pd.Series | None
) -> Decision | None:
    scored = []
    orders = order.distinct if order else 0
    for c in codes:
        if c.name in used or c.surrogate or c.distinct < 1 or c.nulls > 0.2:
            continue
        if order is not None and c.distinct > max(orders * 0.7, 3):
            continue
        if order is None and c.ratio > 0.3:
            continue
        determined = _purity(order.text, c.text) if order is not None else 0.8
        if determined < 0.8:
            continue
        apart = 1 - _overlap(c.text, order.text, ref) if order is not None else 0.5
        fine = min(1.0, np.log1p(c.distinct) / np.log1p(8))
        value = 0.4 * apart + 0.3 * determined + 0.3 * fine
        value += NAME_WEIGHT * name_score(c.name, "machine_code")
        value -= NAME_WEIGHT * max(name_score(c.name, "plant"), name_score(c.name, "product_code"))
        why = f"{c.distinct} values, set by the order ({determined:.0%}), orders one after another ({apart:.0%})"
        scored.append((value, c, why))
    return _pick(scored, "machine_code")


def _product(
    codes: list[Column], order: Column | None, machine: Column | None, used: set[str]
) -> Decision | None:
    if order is None:
        return None
    scored = []
    for c in codes:
        if c.name in used or c.surrogate or c.nulls > 0.5:
            continue
        if c.distinct < 2 and name_score(c.name, "product_code") < 0.8:
            continue
        determined = _purity(order.text, c.text)
        if determined < 0.85 or c.distinct > 0.8 * order.distinct:
            continue  # a product is shared by orders; one value per order is another order key
        by_machine = _purity(machine.text, c.text) if machine is not None else 0.0
        top = float(c.text.value_counts(normalize=True).iloc[0])
        value = 0.5 * determined + 0.3 * (1 - by_machine) + 0.2 * (1 - top)
        value += NAME_WEIGHT * name_score(c.name, "product_code")
        value -= NAME_WEIGHT * max(
            name_score(c.name, "plant"), name_score(c.name, "status"), name_score(c.name, "cancel")
        )
        if _flag(c) is not None:
            value -= 0.5
        scored.append((value, c, f"{c.distinct} values, set by the order ({determined:.0%})"))
    return _pick(scored, "product_code")


# ---------------------------------------------------------------------------- filters


def _flag(c: Column) -> tuple[str | None, str | None] | None:
    """(set value, unset value) when the column is a yes/no flag in one of its spellings."""
    values = c.raw.dropna()
    if pd.api.types.is_bool_dtype(values):
        return ("True", "False")
    texts = set(c.text.dropna().str.lower().unique())
    blank = c.nulls > 0
    if not texts or len(texts) > 2:
        return None
    if len(texts) == 1 and blank and len(next(iter(texts))) == 1:
        return (next(iter(texts)), None)  # 'X' (or 'D', '*') or blank
    for yes, no in FLAG_PAIRS:
        if no == "" and texts == {yes}:
            return (yes, None)
        if texts <= {yes, no} and (len(texts) == 2 or blank):
            return (yes, no)
    return None


def _original(c: Column, lower: str | None) -> Any:
    """The spelling and type of a value as it sits in the source: ``1`` for an integer column
    (also when NULLs made pandas hold it as 1.0), ``'1'`` for a text one."""
    if lower is None:
        return None
    for value in c.raw.dropna().unique():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool):
            if str(value).lower() == lower:
                return value
            continue
        if c.numeric and not c.fractional and not isinstance(value, str):
            number = int(value) if float(value).is_integer() else None
            if number is not None and str(number) == lower:
                return number
            continue
        if str(value).strip().lower() == lower:
            return value.strip() if isinstance(value, str) else value
    if c.numeric and not c.fractional and lower.lstrip("-").isdigit():
        return int(lower)
    return lower


def _filters(
    columns: list[Column], used: set[str], machine: Column | None, notes: list[str]
) -> list[FilterProposal]:
    out: list[FilterProposal] = []
    for c in columns:
        if c.name in used or c.surrogate or c.n == 0 or c.distinct > 20:
            continue
        if c.temporal is not None and not c.temporal.weak:
            continue
        counts = [(_plain(v), int(n)) for v, n in c.raw.value_counts(dropna=False).head(11).items()]
        flag = _flag(c)
        cancel_name = name_score(c.name, "cancel")
        active_name = name_score(c.name, "active")
        if flag is not None and (cancel_name or active_name):
            yes, no = (_original(c, flag[0]), _original(c, flag[1]))
            if pd.api.types.is_bool_dtype(c.raw.dropna()):
                yes, no = True, False
            has_null = bool(c.raw.isna().any())
            blanks = bool(c.raw.dropna().astype(str).str.strip().eq("").any())
            unset = "blank" if no is None else no
            if active_name > cancel_name:
                spec: dict[str, Any] = {"column": c.name, "eq": yes}
                why = f"a yes/no flag ({yes}/{unset}) whose name says valid: rows with {yes} kept"
                if has_null:
                    why += f"; rows with NULL ({float(c.raw.isna().mean()):.0%}) are dropped"
            elif no is None and has_null and not blanks:
                spec = {"column": c.name, "is_null": True}
                why = f"a cancellation flag ({yes} = cancelled, else NULL): rows with {yes} dropped"
            else:
                spec = {"column": c.name, "ne": yes}
                why = f"a cancellation flag ({yes}/{unset}, {yes} = cancelled): rows with {yes} dropped"
                if has_null:
                    share = float(c.raw.isna().mean())
                    why += f"; rows with NULL ({share:.0%}) are kept: ne keeps NULL"
            out.append(FilterProposal(c.name, "cancel", spec, True, why, counts))
            continue
        lowered = {str(v).strip().lower(): v for v in c.raw.dropna().unique()}
        bad = [v for k, v in lowered.items() if _cancelled_word(k)]
        if bad and len(lowered) >= 2 and not c.numeric:
            values = sorted(str(v).strip() for v in bad)
            spec = {"column": c.name, "not_in": values}
            why = f"status values {', '.join(values)} mean cancelled/deleted: dropped"
            out.append(FilterProposal(c.name, "status", spec, True, why, counts))
            continue
        if 2 <= c.distinct <= 12 and c.nulls < 0.05 and not c.fractional:
            by_machine = _purity(machine.text, c.text) if machine is not None else 0.0
            fewer = machine is None or c.distinct < machine.distinct
            # a plant splits the machines: not one value most machines share (fertig/offen)
            splits = machine is not None and _majorities(machine.text, c.text) >= 2
            named = name_score(c.name, "plant")
            if name_score(c.name, "status") >= 0.8 and named < 0.6:
                listing = ", ".join(f"{v} ({n:,})" for v, n in counts)
                notes.append(f"{c.name}: a status ({listing}); not a filter")
                continue
            if (by_machine >= 0.98 and fewer and splits) or named >= 0.6:
                top = counts[0][0]
                listing = ", ".join(f"{v} ({n:,} rows)" for v, n in counts)
                spec = {"column": c.name, "eq": top}
                how = "the machine determines it" if by_machine >= 0.98 else "its name"
                why = f"a plant ({how}); values {listing}: which plant?"
                out.append(FilterProposal(c.name, "plant", spec, False, why, counts))
    return out


def _majorities(machine: pd.Series, values: pd.Series) -> int:
    """How many different values are the most frequent one of some machine."""
    frame = pd.DataFrame({"m": machine, "v": values}).dropna()
    if frame.empty:
        return 0
    top = frame.groupby("m", sort=False, observed=True)["v"].agg(lambda v: v.mode().iloc[0])
    return int(top.nunique())


def _cancelled_word(text: str) -> bool:
    if text in CANCEL_VALUES and len(text) > 1:
        return True
    return any(text.startswith(w) for w in CANCEL_VALUES if len(w) >= 5)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value
