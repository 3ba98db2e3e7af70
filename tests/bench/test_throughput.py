"""bench/throughput.py: which run a mode reports, and the ratios it derives from the reported runs."""

from __future__ import annotations

from bench_helpers import load_bench

throughput = load_bench("throughput")


def test_the_median_run_is_reported_with_every_runs_speed() -> None:
    runs = [{"tokens_per_second": 400.0, "run": 1}, None, {"tokens_per_second": 380.0, "run": 2}]
    runs.append({"tokens_per_second": 450.0, "run": 3})
    median = throughput.median_run(runs)
    assert median["run"] == 1  # 380, 400, 450: the middle one; a mode that did not run (None) is left out
    assert median["runs_tokens_per_second"] == [400.0, 380.0, 450.0]  # in the order they ran
    even = throughput.median_run([{"tokens_per_second": 2.0}, {"tokens_per_second": 1.0}])
    assert even["tokens_per_second"] == 1.0  # the lower middle of an even count
    assert throughput.median_run([None, None]) is None


def test_the_ratios_take_b_over_a_and_over_llama_cpps_faster_mode() -> None:
    modes = {
        "b_copydesk": {"tokens_per_second": 437.8, "warm_up_batch": {"tokens_per_second": 410.5}},
        "a_naive": {"tokens_per_second": 15.7},
        "c_llama_cpp_single": {"tokens_per_second": 30.0},
        "c_llama_cpp_parallel": {"tokens_per_second": 98.3},
    }
    assert throughput.ratios(modes) == {
        "ratio_b_over_a": 27.89,
        "ratio_first_batch_over_a": 26.15,
        "ratio_b_over_c_best": 4.45,
    }
    without_llama = {**modes, "c_llama_cpp_single": None, "c_llama_cpp_parallel": None}
    without_llama["b_copydesk"] = {"tokens_per_second": 437.8, "warm_up_batch": None}  # --warm-briefs 0
    assert throughput.ratios(without_llama) == {"ratio_b_over_a": 27.89}
