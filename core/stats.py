"""Small statistics shared by the monitoring figures and the benches."""


def quantile(ordered: list[float], q: float) -> float:
    """The value below which a fraction ``q`` of the sorted ``ordered`` values lie.

    Nearest rank, no interpolation: ``ordered[floor(q * n)]``, the last one for
    q = 1. NaN when there is no value.
    """
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
