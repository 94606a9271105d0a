"""Event codes from the (machine, order) sequences, checked by folding the sample with the real fold.

Where each code stands in its order's bookings (first, last, before or after which code) gives a
first assignment: the code that opens sequences starts runs, the code that closes them ends them,
a code that is followed by a start of the same order pauses (END), one that follows a pause resumes
(START), the rest are quantity reports (ignore). Then each code is tried under every kind and the
sample is folded (etl/pipeline/fold.py) with each candidate: the score counts anomalies against events the
fold used cleanly, so listing a pause and its resume (more runs, no anomaly) beats ignoring both,
and a quantity report listed as END (orphan ENDs) loses. Rare codes are left unlisted: they show
up as ``unknown_event``, never silently ignored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from etl.config.models import PLACEHOLDERS, ColumnSpec, DstPolicy, normalize_code
from etl.pipeline.fold import fold
from etl.pipeline.mapping import text_values, timestamps


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


KINDS = ("START", "END", "IGNORE")
RARE_SHARE = 0.01  # below this share of the sampled rows (or 1-2 rows) a code stays unlisted
MAX_CODES = 14  # codes tried one by one; the rest of a long tail stays unlisted
# usual spellings: a tie-breaker for the first guess only; the fold decides
START_WORDS = _words("A AN ANM B B10 BEGIN BEGINN LOGIN LOGON ON R10 RUN S START STARTED ZZS")
END_WORDS = _words("AB ABM B30 B40 DONE E END ENDE F FIN FINISHED FM LOGOFF OFF R40 STOP ZZE")


@dataclass
class CodeGuess:
    """The proposed events block and what it rests on."""

    events: dict[str, list[Any]]
    notes: dict[str, str]  # code -> why, with confidence
    counts: list[tuple[Any, int]]  # every sampled code, most frequent first
    unlisted: list[Any] = field(default_factory=list)
    runner_up: str | None = None  # the second-best assignment, when it is close
    score: float = 0.0
    sequences: int = 0


def guess_codes(
    sample: pd.DataFrame, columns: dict[str, ColumnSpec], zone: ZoneInfo | None = None
) -> CodeGuess:
    """START/END/ignore for the sampled codes, scored by the fold; see the module docstring."""
    spec = columns.get("event")
    if spec is None or spec.column is None or spec.column not in sample:
        return CodeGuess({"START": [PLACEHOLDERS[0]], "END": [PLACEHOLDERS[1]]}, {}, [])
    raw = sample[spec.column]
    code_text = text_values(raw, True)
    originals: dict[str, Any] = {}
    for value in raw.dropna().unique():
        key = normalize_code(value.item() if isinstance(value, np.generic) else value)
        originals.setdefault(key, value.item() if isinstance(value, np.generic) else value)
    counts = Counter(code_text.dropna().tolist())
    ordered = [c for c, _ in counts.most_common()]
    total = sum(counts.values())
    frame = _frame(sample, columns, code_text, zone or ZoneInfo("UTC"))
    least = 3 if total >= 300 else 2 if total >= 20 else 1  # a tiny sample: every code counts
    common = [c for c in ordered if counts[c] >= max(least, RARE_SHARE * total)][:MAX_CODES]
    unlisted = [c for c in ordered if c not in common]
    shown = [(originals.get(c, c), counts[c]) for c in ordered]
    if frame is None or len(common) < 2:
        return CodeGuess({"START": [PLACEHOLDERS[0]], "END": [PLACEHOLDERS[1]]}, {}, shown)
    stats = _positions(frame)
    initial = _initial(common, stats)
    scorer = _Scorer(frame, stats)
    best, best_score = _search(common, initial, scorer)
    for start in _alternatives(common, initial, stats):
        found, value = _search(common, start, scorer)
        if value < best_score - 1e-9:
            best, best_score = found, value
    runner = scorer.runner_up(best)
    outside = scorer.after_end(frame["code"].map(best)).groupby(frame["code"]).mean()
    notes: dict[str, str] = {}
    for code in common:
        kind = best[code]
        alternatives = [scorer.score({**best, code: k}) for k in KINDS if k != kind]
        valid = [a for a in alternatives if np.isfinite(a)]
        cost = (min(valid) - best_score) if valid else float(counts[code])
        confidence = float(np.clip(cost / max(counts[code], 1), 0.3, 0.99))
        role = _role(code, kind, best, stats, float(outside.get(code, 0.0)))
        notes[code] = f"{role} ({confidence:.0%})"
    for code in unlisted:
        notes[code] = "rare: left unlisted, so it shows up as unknown_event"
    events: dict[str, list[Any]] = {
        "START": [originals.get(c, c) for c in common if best[c] == "START"],
        "END": [originals.get(c, c) for c in common if best[c] == "END"],
    }
    ignore = [originals.get(c, c) for c in common if best[c] == "IGNORE"]
    if ignore:
        events["ignore"] = ignore
    runner_text = None
    if runner is not None:
        alt, alt_score = runner
        if alt_score - best_score <= max(2.0, 0.02 * len(frame)):
            changed = [f"{originals.get(c, c)} as {alt[c]}" for c in common if alt[c] != best[c]]
            runner_text = f"{', '.join(changed)} (score {alt_score:.0f} vs {best_score:.0f})"
    return CodeGuess(
        events=events,
        notes={str(originals.get(k, k)): v for k, v in notes.items()},
        counts=shown,
        unlisted=[originals.get(c, c) for c in unlisted],
        runner_up=runner_text,
        score=best_score,
        sequences=int(frame.groupby(["machine_code", "order_code"]).ngroups),
    )


def _frame(
    sample: pd.DataFrame, columns: dict[str, ColumnSpec], code: pd.Series, zone: ZoneInfo
) -> pd.DataFrame | None:
    needed = ("timestamp", "machine_code", "order_code")
    if any(n not in columns or not columns[n].source_columns() for n in needed):
        return None
    try:
        frame = pd.DataFrame(
            {
                "ts": timestamps(sample, columns["timestamp"], zone, DstPolicy()),
                "machine_code": text_values(sample[columns["machine_code"].column], True),
                "order_code": text_values(sample[columns["order_code"].column], True),
                "code": code,
            }
        )
    except (KeyError, ValueError, TypeError):
        return None
    product = columns.get("product_code")
    frame["product_code"] = (
        text_values(sample[product.column], True)
        if product is not None and product.column in sample
        else pd.Series(pd.NA, index=sample.index, dtype="string")
    )
    frame = frame.dropna(subset=["ts", "machine_code", "order_code", "code"])
    if frame.empty:
        return None
    return frame.sort_values(["machine_code", "order_code", "ts"], kind="stable").reset_index(
        drop=True
    )


def _positions(frame: pd.DataFrame) -> pd.DataFrame:
    """Per code: share of its rows that open / close their sequence, and the codes around it."""
    groups = frame.groupby(["machine_code", "order_code"], sort=False)["code"]
    data = pd.DataFrame(
        {
            "code": frame["code"],
            "first": groups.cumcount() == 0,
            "last": groups.cumcount(ascending=False) == 0,
            "next": groups.shift(-1),
            "prev": groups.shift(1),
        }
    )
    stats = data.groupby("code").agg(first=("first", "mean"), last=("last", "mean"))
    for side in ("next", "prev"):
        modes = data.groupby("code")[side].agg(_mode)
        stats[side] = modes.astype(object).where(modes.notna(), None)
    return stats


def _mode(values: pd.Series) -> str | None:
    present = values.dropna()
    return None if present.empty else str(present.mode().iloc[0])


CLOSES = 0.5  # a code that is last in at least this share of its rows' sequences closes them


def _initial(codes: list[str], stats: pd.DataFrame) -> dict[str, str]:
    opener = max(codes, key=lambda c: (stats.at[c, "first"], c.upper() in START_WORDS))
    rest = [c for c in codes if c != opener]
    closer = max(rest, key=lambda c: (stats.at[c, "last"], c.upper() in END_WORDS))
    out = {c: "IGNORE" for c in codes}
    out[opener], out[closer] = "START", "END"
    for c in codes:
        if c in (opener, closer):
            continue
        if c.upper() in START_WORDS:
            out[c] = "START"
        elif c.upper() in END_WORDS or stats.at[c, "last"] >= CLOSES > stats.at[c, "first"]:
            out[c] = "END"  # several codes that close sequences: finished, aborted, ...
    return out


def _alternatives(
    codes: list[str], initial: dict[str, str], stats: pd.DataFrame
) -> list[dict[str, str]]:
    """Other starting points for the climb: opener/closer only, and pause/resume pairs."""
    opener = next(c for c in codes if initial[c] == "START")
    closer = next(c for c in codes if initial[c] == "END")
    bare = {c: "IGNORE" for c in codes} | {opener: "START", closer: "END"}
    paired = dict(bare)
    for c in codes:
        if c in (opener, closer):
            continue
        nxt, prev = stats.at[c, "next"], stats.at[c, "prev"]
        pause = nxt is not None and nxt not in (c, closer) and stats.at[c, "last"] < 0.3
        resumed = nxt == opener or (nxt is not None and stats.at[nxt, "prev"] == c)
        if pause and prev is not None and prev != nxt and resumed:
            paired[c], paired[nxt] = "END", "START"
    return [bare, paired]


class _Scorer:
    """Folds the sample under an assignment; remembers every score."""

    def __init__(self, frame: pd.DataFrame, stats: pd.DataFrame) -> None:
        self.frame = frame
        self.groups = [frame["machine_code"], frame["order_code"]]
        self.seen: dict[tuple[tuple[str, str], ...], float] = {}
        # a tie-breaker: codes that open sequences start, codes that close them end
        counts = frame["code"].value_counts()
        self.opens = (stats["first"] * counts.reindex(stats.index).fillna(0)).to_dict()
        self.closes = (stats["last"] * counts.reindex(stats.index).fillna(0)).to_dict()

    def score(self, assignment: dict[str, str]) -> float:
        key = tuple(sorted(assignment.items()))
        if key in self.seen:
            return self.seen[key]
        kinds = set(assignment.values())
        if "START" not in kinds or "END" not in kinds:
            self.seen[key] = float("inf")
            return float("inf")
        kind = self.frame["code"].map(assignment)
        keep = kind.isin(["START", "END"])
        bookings = self.frame.loc[keep, ["ts", "machine_code", "order_code", "product_code"]]
        bookings = bookings.assign(event=kind[keep].astype("string").to_numpy())
        result = fold(bookings.reset_index(drop=True))
        anomalies = len(result.anomalies)
        flagged = int(result.runs["flags"].fillna("").str.contains("closed_by_next_order").sum())
        # an ignored booking after its order's END is outside every run: a quantity report
        # there is possible, a code that always comes there is the real END
        bad = anomalies + flagged + int(self.after_end(kind).sum())
        clean = max(int(keep.sum()) - bad, 0)
        value = bad - 0.5 * clean
        value -= 0.1 * sum(
            self.opens.get(c, 0.0) if k == "START" else self.closes.get(c, 0.0)
            for c, k in assignment.items()
            if k != "IGNORE"
        )
        self.seen[key] = value
        return value

    def after_end(self, kind: pd.Series) -> pd.Series:
        """Per row: an IGNORE booking whose latest START/END before it in its sequence is an END."""
        listed = kind.where(kind.isin(["START", "END"]))
        previous = listed.groupby(self.groups, sort=False).shift(1)
        previous = previous.groupby(self.groups, sort=False).ffill()
        return (kind == "IGNORE") & (previous == "END")

    def runner_up(self, best: dict[str, str]) -> tuple[dict[str, str], float] | None:
        key = tuple(sorted(best.items()))
        others = [(k, v) for k, v in self.seen.items() if k != key and np.isfinite(v)]
        if not others:
            return None
        k, v = min(others, key=lambda kv: kv[1])
        return dict(k), v


def _search(
    codes: list[str], initial: dict[str, str], scorer: _Scorer
) -> tuple[dict[str, str], float]:
    """Hill-climb one code at a time from the positional guess (a few dozen folds)."""
    best = dict(initial)
    best_score = scorer.score(best)
    for _ in range(4):
        improved = False
        for code in codes:
            for kind in KINDS:
                if kind == best[code]:
                    continue
                trial = {**best, code: kind}
                value = scorer.score(trial)
                if value < best_score - 1e-9:
                    best, best_score, improved = trial, value, True
        if not improved:
            break
    return best, best_score


def _role(
    code: str, kind: str, best: dict[str, str], stats: pd.DataFrame, outside: float = 0.0
) -> str:
    first, last = float(stats.at[code, "first"]), float(stats.at[code, "last"])
    nxt, prev = stats.at[code, "next"], stats.at[code, "prev"]
    if kind == "START":
        if first >= 0.5:
            return f"START: opens {first:.0%} of its rows' sequences"
        if prev is not None and best.get(prev) == "END":
            return f"START (resume): mostly after {prev}"
        return "START: the fold has fewest anomalies with it as a start"
    if kind == "END":
        if last >= 0.5:
            return f"END: closes {last:.0%} of its rows' sequences"
        if nxt is not None and best.get(nxt) == "START":
            return f"END (pause): mostly followed by {nxt}"
        return "END: the fold has fewest anomalies with it as an end"
    if outside >= 0.005:
        return f"ignore: changes nothing; {outside:.0%} of its rows come after their order's END"
    return "ignore: inside a run, changes nothing (a quantity report)"
