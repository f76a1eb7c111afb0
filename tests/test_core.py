"""core/: the shared pieces every app and bench uses (pure logic)."""

import io
import math

from core.progress import ProgressBar
from core.stats import quantile
from core.tables import render_table


def test_table_for_benches_right_aligns_numbers_under_a_rule():
    text = render_table(
        ["variant", "requests", "rps"],
        [["as built", 12345, 456.78], ["off", 999, 1000.0]],
        numbers_right=True,
        rule=True,
    )
    assert text.splitlines() == [
        "variant   requests      rps",
        "--------  --------  -------",
        "as built    12,345    456.8",
        "off            999  1,000.0",
    ]


def test_quantile_is_the_nearest_rank_and_nan_without_values():
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 51.0
    assert quantile(values, 0.99) == 100.0
    assert quantile(values, 1) == 100.0
    assert quantile([2.0], 0.5) == 2.0
    assert math.isnan(quantile([], 0.5))


def test_progress_bar_as_a_callback_finishes_at_the_total():
    stream = io.StringIO()
    bar = ProgressBar("replaying", 0, stream=stream, width=10)
    bar(0, 4)
    bar(4, 4)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("replaying [----------] 0/4")
    assert lines[-1].startswith("replaying [##########] 4/4 100%")
