"""The commands' progress lines (spade_tf.progress.ProgressLine) keep their words."""

import types

import pytest

from spade_cli import evaluate, synthesize
from spade_tf import progress


@pytest.fixture
def clock(monkeypatch):
    clock = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    return clock


def test_spade_synthesize_counts_images_and_their_rate(clock, capsys):
    report = synthesize._progress().update  # as synthesize_files calls it
    report(12, 40, 3.9)
    clock.now += synthesize.PROGRESS_SECONDS / 2
    report(20, 40, 5.0)
    clock.now += synthesize.PROGRESS_SECONDS
    report(21, 40, 7.0)
    report(40, 40, 10.0)
    assert capsys.readouterr().err == ("synthesized 12/40 (3.1 images/s)\n"
                                       "synthesized 21/40 (3.0 images/s)\n"
                                       "synthesized 40/40 (4.0 images/s)\n")


def test_spade_eval_names_each_stage(clock, capsys):
    report = evaluate._progress()
    report("real", 8, 16)
    clock.now += evaluate.PROGRESS_INTERVAL / 2
    report("real", 12, 16)
    report("real", 16, 16)
    report("generated", 8, None)
    clock.now += evaluate.PROGRESS_INTERVAL
    report("generated", 16, None)
    assert capsys.readouterr().err == ("spade-eval: real 8/16\n"
                                       "spade-eval: real 16/16\n"
                                       "spade-eval: generated 8/?\n"
                                       "spade-eval: generated 16/?\n")
