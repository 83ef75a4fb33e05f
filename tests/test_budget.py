"""The compute budget of the report (sekd.report.budget): benchmark files, parameter counts from the
safetensors headers, per-row hours, and the report's section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sekd.report import budget
from sekd.report import html as report

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path: Path, wall: float, cpu: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:01\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_parameters_are_counted_from_the_safetensors_headers(tiny_model_dir):
    from sekd import models

    model = models.load_causal_lm(str(tiny_model_dir), "float32", False, None)
    assert budget.parameters(tiny_model_dir) == sum(p.numel() for p in model.parameters())


def test_a_rows_hours_come_from_its_training_and_decoding_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = "kd/teacher/sekd-lam0.5-beta0.5-gamma0.4"
    for seed, wall in ((1, 3600.0), (2, 1800.0)):
        _bench(tmp_path / f"results/benchmarks/{run}/seed{seed}.tsv", wall, wall / 2)
        for d in ("en-de", "de-en"):
            _bench(tmp_path / f"results/benchmarks/decode/{run}/seed{seed}/wmt22/{d}.tsv", 360, 1)
        model = tmp_path / f"results/models/{run}/seed{seed}"
        model.mkdir(parents=True)
        summary = {"devices": {"world_size": 8, "gpus": 8, "gpu_name": "NVIDIA H100"}}
        summary["lora"] = {"rank": 2, "trainable": 5, "total": 17}  # a LoRA run: its adapter
        (model / "train_summary.json").write_text(json.dumps(summary))
        header = json.dumps({"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}})
        blob = len(header).to_bytes(8, "little") + header.encode() + bytes(48)
        (model / "model.safetensors").write_bytes(blob)
    row = budget.row_budget("Self-Evolution KD", run, [1, 2])
    assert row["parameters"] == 12 and row["trained_parameters"] == 5
    assert (row["gpus"], row["gpu"]) == (8, "NVIDIA H100")
    assert row["train_hours"] == 1.5 and row["train_cpu_hours"] == 0.75
    assert row["gpu_hours"] == 12.0  # (1 h + 0.5 h) x 8 GPUs
    assert row["decode_hours"] == pytest.approx(4 * 360 / 3600)
    total = budget.study_total()
    assert total["jobs"] == 2 + 4 and total["wall_hours"] == pytest.approx(1.5 + 0.4)


def test_runs_from_before_the_summary_recorded_devices_count_no_gpu():
    assert budget.devices({"models": {}}) == (0, None)


def test_an_empty_benchmark_file_is_an_error(tmp_path):
    (tmp_path / "x.tsv").write_text(HEADER)
    with pytest.raises(ValueError, match="empty benchmark"):
        budget.job_seconds(tmp_path / "x.tsv")


def test_the_report_shows_the_budget(tmp_path):
    out = tmp_path / "report.html"
    row = {
        "system": "Student",
        "run": "sft/student",
        "parameters": 6738415616,
        "trained_parameters": 6738415616,
        "gpus": 4,
        "gpu": "NVIDIA A100",
        "train_hours": 10.0,
        "train_cpu_hours": 1.0,
        "gpu_hours": 40.0,
        "decode_hours": 0.5,
    }
    total = {"jobs": 3, "wall_hours": 11.0, "cpu_hours": 2.0}
    report.build([], [], {}, out, budget={"tables": {"table1": [row]}, "total": total})
    html = out.read_text()
    assert "<h2>Compute budget</h2>" in html and "6738415616" in html and "NVIDIA A100" in html
    assert "3 jobs, 11.0 wall hours" in html
