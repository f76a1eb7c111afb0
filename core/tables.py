"""Plain-text tables for commands and benches: aligned columns, one line per row."""

from collections.abc import Iterable


def render_table(
    headers: list[str],
    rows: Iterable[Iterable],
    *,
    numbers_right: bool = False,
    rule: bool = False,
) -> str:
    """Align columns as the Kafka CLI tools do: a header line, then one per row.

    ``None`` shows as ``-``. ``numbers_right`` right-aligns every column but the
    first (and formats numbers with thousands separators), ``rule`` draws a line of
    dashes under the headers.
    """
    cells = [[_cell(v, numbers_right) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [list(headers), *cells]
    if rule:
        lines.insert(1, ["-" * w for w in widths])
    return "\n".join(_line(line, widths, numbers_right) for line in lines)


def _line(cells: list[str], widths: list[int], numbers_right: bool) -> str:
    return "  ".join(
        c.rjust(w) if numbers_right and i else c.ljust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def _cell(value, numbers: bool) -> str:
    if value is None:
        return "-"
    if numbers and isinstance(value, float):
        return f"{value:,.1f}"
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
