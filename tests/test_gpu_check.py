"""bench/gpu_check.sh --dry-run: the GPU check's code paths on CPU (tiny models, gloo, fp32 ZeRO-3)
write one complete JSON summary whose every part ran and whose figures are finite."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "gpu_check.json").read_text())


def test_every_part_ran_and_the_summary_is_complete(summary):
    assert summary["complete"] is True
    assert summary["mode"] == "dry"
    assert set(summary["parts"]) == {"train", "loss", "decode", "vllm"}
    failed = {k: v.get("error") for k, v in summary["parts"].items() if not v["ok"]}
    assert not failed
    for key in ("python", "torch", "transformers", "deepspeed", "device"):
        assert key in summary["environment"]


def test_training_runs_report_steps_times_and_memory(summary):
    train = summary["parts"]["train"]
    assert train["deepspeed_config"] == "config/deepspeed/zero3_fp32_cpu.json"
    assert train["teacher_parameters"] > train["student_parameters"] > 0
    for run in ("sft", "forward_kd", "sekd"):
        result = train[run]
        assert result["ok"] and result["objective"] == run
        assert result["global_steps"] == len(result["step_seconds"]) == 2
        assert len(result["losses"]) == 2
        assert result["median_step_s"] > 0
        assert result["rss_peak_mib"] > 0  # the rank's own peak (bench/gpu_probe)


def test_loss_benchmark_covers_both_vocabularies_against_ce_and_the_floor(summary):
    loss = summary["parts"]["loss"]
    vocabularies = [k for k in loss if k.startswith("V")]
    assert len(vocabularies) == 2
    for key in vocabularies:
        row = loss[key]
        assert row["floor_s"] > 0 and row["cross_entropy"]["time_s"] > 0
        for objective in ("forward_kd", "sekd"):
            assert {"time_s", "peak_mib", "time_vs_ce", "time_vs_floor", "peak_mem_vs_ce"} <= set(
                row[objective]
            )


def test_decoding_reports_tokens_per_second_and_vllm_a_skip(summary):
    decode = summary["parts"]["decode"]
    assert decode["generated_tokens"] > 0 and decode["tokens_per_s"] > 0
    assert "skipped" in summary["parts"]["vllm"]  # no vLLM here (nor a GPU)


def test_every_number_is_finite(summary):
    numbers = list(_numbers(summary))
    assert numbers and all(math.isfinite(x) for x in numbers)
