"""The lr schedules against fairseq 0.8's formulas at known points (docs/METHOD.md §3.1)."""

import math

import pytest

from hat_cli.core.errors import HatError
from hat_cli.training.schedule import CosineSchedule, InverseSqrtSchedule, make_schedule


def test_cosine_matches_published_wmt_settings_at_known_points():
    s = make_schedule("cosine", lr=1e-3, warmup_updates=10000, max_updates=40000, warmup_init_lr=1e-7, min_lr=1e-7)
    assert isinstance(s, CosineSchedule)
    assert s.lr(0) == pytest.approx(1e-7, rel=1e-12)
    # linear warmup: halfway is the midpoint of init and peak
    assert s.lr(5000) == pytest.approx((1e-7 + 1e-3) / 2, rel=1e-12)
    assert s.lr(10000) == pytest.approx(1e-3, rel=1e-12)
    # half the cosine period: the mean of peak and floor
    assert s.lr(25000) == pytest.approx(1e-7 + 0.5 * (1e-3 - 1e-7), rel=1e-12)
    # a quarter period: lr_min + 1/2 (max - min)(1 + cos(pi/4))
    assert s.lr(17500) == pytest.approx(1e-7 + 0.5 * (1e-3 - 1e-7) * (1 + math.cos(math.pi / 4)), rel=1e-12)
    # the last update sits just above the floor
    assert s.lr(39999) == pytest.approx(1e-7 + 0.5 * (1e-3 - 1e-7) * (1 + math.cos(math.pi * 29999 / 30000)), rel=1e-12)
    # fairseq restarts the cosine after one period (t-mult 1, lr-shrink 1)
    assert s.lr(40000) == pytest.approx(1e-3, rel=1e-12)


def test_cosine_is_monotone_in_each_phase():
    s = make_schedule("cosine", lr=1e-3, warmup_updates=100, max_updates=400)
    warm = [s.lr(n) for n in range(101)]
    decay = [s.lr(n) for n in range(100, 400)]
    assert warm == sorted(warm)
    assert decay == sorted(decay, reverse=True)


def test_inverse_sqrt_matches_published_iwslt_settings():
    s = make_schedule("inverse_sqrt", lr=5e-4, warmup_updates=10000, max_updates=50000, warmup_init_lr=1e-7)
    assert isinstance(s, InverseSqrtSchedule)
    assert s.lr(0) == pytest.approx(1e-7, rel=1e-12)
    assert s.lr(2500) == pytest.approx(1e-7 + 2500 * (5e-4 - 1e-7) / 10000, rel=1e-12)
    assert s.lr(10000) == pytest.approx(5e-4, rel=1e-12)
    assert s.lr(40000) == pytest.approx(5e-4 * math.sqrt(10000) / math.sqrt(40000), rel=1e-12)
    assert s.lr(40000) == pytest.approx(2.5e-4, rel=1e-12)


def test_bad_schedules_are_rejected():
    with pytest.raises(HatError, match="Unknown lr schedule"):
        make_schedule("linear", lr=1e-3, warmup_updates=1, max_updates=10)
    with pytest.raises(HatError, match="larger than warmup"):
        make_schedule("cosine", lr=1e-3, warmup_updates=10, max_updates=10)
