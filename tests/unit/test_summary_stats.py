import math

import pytest

from redlat.summary import wilson_interval


def test_wilson_matches_known_values():
    # 10 successes in 100 trials: Wilson 95% interval is (0.0552, 0.1744) to 4 places.
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.05523, abs=1e-4)
    assert high == pytest.approx(0.17437, abs=1e-4)


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0.0 < high < 0.1
    low, high = wilson_interval(50, 50)
    assert high == 1.0 and 0.9 < low < 1.0


def test_wilson_contains_the_point_estimate():
    for k, n in [(1, 3), (7, 20), (199, 200)]:
        low, high = wilson_interval(k, n)
        assert low <= k / n <= high
        assert not math.isnan(low)
