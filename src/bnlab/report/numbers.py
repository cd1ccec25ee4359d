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


def metric_rows(metrics: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Flatten nested metrics into (dotted name, text) rows; long lists are summarised, not dumped."""
    rows: list[tuple[str, str]] = []
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
