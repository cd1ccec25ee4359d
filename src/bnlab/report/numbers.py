"""How the report writes numbers: key numbers with their CI, and nested metrics flattened into rows.

Shared by the HTML and Markdown renderers so both show the same text. Pure functions of plain data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_METRIC_ROWS = 300
_LIST_INLINE = 10  # lists up to this length are printed in full


def format_number(value: Any) -> str:
    """A number in 4 significant digits ("—" for None, "NaN", "∞"); other values as text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.4g}"
    return str(value)


def format_key_number(key: Mapping[str, Any] | None) -> tuple[str, str]:
    """("name = value unit", "95% CI [lo, hi]" or "") of a key number dict; ("—", "") when there is none."""
    if not isinstance(key, Mapping):
        return "—", ""
    unit = f" {key['unit']}" if key.get("unit") else ""
    main = f"{key.get('name', '')} = {format_number(key.get('value'))}{unit}".strip()
    lo, hi = key.get("ci_low"), key.get("ci_high")
    ci = f"95% CI [{format_number(lo)}, {format_number(hi)}]" if lo is not None and hi is not None else ""
    return main, ci


_RANK_TESTS = ("signed_rank", "rank_tost")


def format_result(result: Mapping[str, Any] | None) -> tuple[str, str]:
    """("name = effect unit", "95% CI [lo, hi] · 8 seeds · MDE 0.4") of a result dict (primary, vote or secondary);
    ("—", "") when there is none. A tost result's interval is its 90% one (the interval the equivalence test uses)."""
    if not isinstance(result, Mapping):
        return "—", ""
    unit = f" {result['unit']}" if result.get("unit") else ""
    main = f"{result.get('name', '')} = {format_number(result.get('effect'))}{unit}".strip()
    parts = []
    lo, hi = result.get("ci_low"), result.get("ci_high")
    test = result.get("test")
    level = "90%" if test in ("tost", "rank_tost") else "95%"
    if lo is not None and hi is not None:
        parts.append(f"{level} CI [{format_number(lo)}, {format_number(hi)}]")
    elif test in _RANK_TESTS and (lo is not None or hi is not None):  # a diverged run (±inf) leaves one end open
        parts.append(f"{level} CI [{format_number(lo)}, +∞)" if lo is not None else
                     f"{level} CI (−∞, {format_number(hi)}]")
    if test in _RANK_TESTS:
        parts.append("signed-rank, Hodges–Lehmann effect")
    if result.get("n_seeds"):
        parts.append(f"{result['n_seeds']} " + ("cases" if result.get("test") == "verification" else "seeds"))
    if result.get("mde") is not None:
        parts.append(f"MDE {format_number(result['mde'])}")
    return main, " · ".join(parts)


def power_sentence(result: Mapping[str, Any], threshold: float = 0.0) -> str:
    """For an undecided vote: is the effect small, or the audit too small to see it? (From the MDE: the smallest
    true effect its seed count detects with 80% power at the 5% level.)"""
    effect, mde, n = result.get("effect"), result.get("mde"), result.get("n_seeds")
    if effect is None or mde is None or not n:
        return f"{result.get('name', '')}: too few finite per-seed values to estimate an effect."
    name = result.get("name", "")
    if result.get("test") in ("tost", "rank_tost"):
        return (f"{name}: equivalence within ±{format_number(threshold)} needs a 90% CI inside the margin; with "
                f"{n} seeds the smallest margin that could be shown is about {format_number(mde)}.")
    distance = abs(float(effect) - threshold)
    if distance < mde:
        return (f"{name}: the observed effect ({format_number(effect)}) is smaller than the minimum detectable "
                f"effect at {n} seeds ({format_number(mde)}): an effect this small, if real, would need more seeds "
                "to show.")
    return (f"{name}: the observed effect ({format_number(effect)}) is at least the minimum detectable effect at "
            f"{n} seeds ({format_number(mde)}), yet its interval reaches the threshold: the seeds disagree more "
            "than the spread the MDE assumes, or the test (exact, discrete) needs more seeds in one direction.")


def _is_number(v: Any) -> bool:
    return v is None or isinstance(v, (int, float))


def _format_list(values: Sequence[Any]) -> str:
    if all(_is_number(v) for v in values):
        if len(values) <= _LIST_INLINE:
            return "[" + ", ".join(format_number(v) for v in values) + "]"
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        rng = f", min {format_number(min(finite))}, max {format_number(max(finite))}" if finite else ""
        return f"{len(values)} values (first {format_number(values[0])}, last {format_number(values[-1])}{rng})"
    if all(isinstance(v, str) for v in values) and len(values) <= _LIST_INLINE:
        return ", ".join(values)
    return f"{len(values)} entries"


def _labelled_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of the three parts every claim's metrics share, each named for what its numbers are: the primary
    endpoint's per-seed values per setting, each secondary result's per-seed values with its unit, and each
    verification's error ÷ tolerance per case."""
    rows: list[tuple[str, str]] = []
    primary = metrics.get("primary")
    if isinstance(primary, Mapping):
        for setting, values in primary.items():
            if isinstance(values, Sequence) and not isinstance(values, str):
                name = "primary endpoint" + ("" if setting == "all" else f" [{setting}]")
                rows.append((f"{name}: per-seed values, in seed order", _format_list(values)))
    secondary = metrics.get("secondary")
    if isinstance(secondary, Mapping):
        for name, spec in secondary.items():
            values = spec.get("values") if isinstance(spec, Mapping) else None
            if isinstance(values, Sequence) and not isinstance(values, str):
                unit = f" ({spec['unit']})" if spec.get("unit") else ""
                rows.append((f"secondary, {name}: per-seed values{unit}", _format_list(values)))
    checks = metrics.get("checks")
    if isinstance(checks, Mapping):
        for name, ratios in checks.items():
            if isinstance(ratios, Sequence) and not isinstance(ratios, str):
                rows.append((f"verification, {name}: error ÷ tolerance per case (< 1 passes)", _format_list(ratios)))
    return rows


_LABELLED = ("primary", "secondary", "checks")


def metric_rows(metrics: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Flatten nested metrics into (name, text) rows; long lists are summarised, not dumped. At the top level the
    primary, secondary and verification parts are named for what their numbers are (`_labelled_rows`); the rest
    by their dotted path."""
    rows: list[tuple[str, str]] = []
    if depth == 0 and isinstance(metrics, Mapping) and any(isinstance(metrics.get(k), Mapping) for k in _LABELLED):
        rows = _labelled_rows(metrics)
        metrics = {k: v for k, v in metrics.items() if not (k in _LABELLED and isinstance(v, Mapping))}
    if isinstance(metrics, Mapping):
        for name, value in metrics.items():
            path = f"{prefix}.{name}" if prefix else str(name)
            if isinstance(value, Mapping) and depth < 4:
                rows.extend(metric_rows(value, path, depth + 1))
            elif isinstance(value, Sequence) and not isinstance(value, str):
                rows.append((path, _format_list(value)))
            elif isinstance(value, Mapping):
                rows.append((path, f"{len(value)} entries"))
            else:
                rows.append((path, format_number(value)))
    elif metrics is not None:
        rows.append((prefix or "value", format_number(metrics)))
    if depth == 0 and len(rows) > MAX_METRIC_ROWS:
        rows = rows[:MAX_METRIC_ROWS] + [("…", f"{len(rows) - MAX_METRIC_ROWS} more rows in results.json")]
    return rows


def format_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    minutes, sec = divmod(float(seconds), 60.0)
    return f"{int(minutes)} min {sec:.0f} s" if minutes else f"{sec:.1f} s"
