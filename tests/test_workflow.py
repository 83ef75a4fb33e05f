"""The workflow through Snakemake on the micro config: the whole study (both tables, every
figure, the report, the artifact) from real runs, and what a change re-plans.

One module-scoped run (a few minutes on 2 cores) feeds every test here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sekd.data import alma as data
from sekd.evaluate import bleu as score

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CONFIGS = [str(ROOT / "config" / "mini.yaml"), str(ROOT / "tests" / "micro.yaml")]
DIRECTIONS = ["en-de", "de-en", "en-cs", "cs-en"]
SYSTEMS = [
    "Teacher",
    "Student",
    "Forward KD",
    "Reverse KD",
    "NoEvo KD",
    "SKEW KD",
    "Self-Evolution KD",
]

FIGURES = ["fig2a", "fig2b", "fig2c", "fig3", "fig4", "fig5", "hard_fraction"]
TABLE_CURVES = ["table1", "table2", "table3"]  # results/curves/<table>.png, in the report too
BASELINES = [
    "Word-KD",
    "SeqKD",
    "Seq-Inter",
    "f-DISTILL KL",
    "f-DISTILL RKL",
    "f-DISTILL JS",
    "f-DISTILL TVD",
    "GKD",
]

pytestmark = pytest.mark.e2e


def snakemake(
    workdir: Path, *args: str, extra_configs: tuple[str, ...] = (), succeed: bool = True
) -> str:
    """Run Snakemake on the repository's Snakefile in `workdir`; return its output, having
    asserted that it succeeded (or, with succeed=False, that it failed)."""
    cmd = [
        str(SNAKEMAKE), "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
        "--cores", "2", *args, "--configfile", *CONFIGS, *extra_configs,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=1800)
    output = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == succeed, output[-5000:]
    return output


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}; {} when nothing is to be done."""
    if "Nothing to be done" in output:
        return {}
    block = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def read_table(workdir: Path, name: str = "table1", delta: bool = False) -> list[dict]:
    """The table's rows; its last, the Δ row (tables.<name>.delta), only with `delta`."""
    with open(workdir / "results" / f"{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows if delta else [r for r in rows if r["system"] != "Δ"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, alma_mirror) -> Path:
    os.environ.setdefault("SEKD_DATA_MIRROR", str(alma_mirror))
    workdir = tmp_path_factory.mktemp("study")
    snakemake(workdir)  # the default target: everything
    snakemake(workdir, "results/artifact.tar.gz")
    return workdir


def test_table1_has_the_papers_shape(study):
    rows = read_table(study)
    assert [r["system"] for r in rows] == SYSTEMS
    columns = list(rows[0])
    assert columns[:7] == ["system", "run", *[f"bleu_{d}" for d in DIRECTIONS], "bleu_avg"]
    assert {f"comet_{d}" for d in DIRECTIONS} <= set(columns)
    assert {f"p_{d}" for d in DIRECTIONS} <= set(columns)
    for row in rows:
        values = [float(row[f"bleu_{d}"]) for d in DIRECTIONS]
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in values)
        assert float(row["bleu_avg"]) == pytest.approx(sum(values) / 4, abs=1e-3)
        assert row["comet_avg"] == ""  # no COMET checkpoint in the miniature: no number
        assert row["n_seeds"] == "1"
    # every KD row but the baseline was tested against Forward KD, on every direction
    for row in rows[3:]:
        assert all(0 <= float(row[f"p_{d}"]) <= 1 for d in DIRECTIONS)
    assert all(rows[2][f"p_{d}"] == "" for d in DIRECTIONS)
    # the Δ row: Self-Evolution KD minus Forward KD, from the table's means
    delta = read_table(study, delta=True)[-1]
    assert delta["system"] == "Δ" and delta["p_en-de"] == ""
    for d in [*DIRECTIONS, "avg"]:
        expected = float(rows[6][f"bleu_{d}"]) - float(rows[2][f"bleu_{d}"])
        assert float(delta[f"bleu_{d}"]) == pytest.approx(expected, abs=1e-3)
    md = (study / "results" / "table1.md").read_text()
    assert "| Self-Evolution KD |" in md and "En→De BLEU" in md
    assert "| Forward KD‡ |" in md and "| NoEvo KD‡ |" in md and "| Δ |" in md
    title = md.split("\n")[0]  # the configured (micro) models, not the paper's Llama-13B
    assert "tiny Llama 32×1 teacher, tiny Llama 16×1 student" in title and "13B" not in title
    assert "COMET: not computed" in md
    assert r"\toprule" in (study / "results" / "table1.tex").read_text()


def test_tables_show_validation_nll_and_kl_beside_bleu(study):
    for name in TABLE_CURVES:
        rows = read_table(study, name)
        columns = list(rows[0])
        assert columns.index("valid_nll") > columns.index("bleu_avg")
        for row in rows:
            nll, kl = float(row["valid_nll"]), float(row["valid_kl"])
            assert math.isfinite(nll) and nll > 0 and math.isfinite(kl) and kl >= 0
            if row["run"].startswith("sft/teacher"):
                assert kl == 0.0  # the table's teacher against itself
        teacher = "teacher_l" if name == "table2" else "teacher"
        fit = json.loads(
            (study / "results" / "fit" / rows[-1]["run"] / "seed1" / f"{teacher}.json").read_text()
        )
        assert fit["tokens"] > 0 and set(fit["directions"])
        assert "Valid NLL" in (study / "results" / f"{name}.md").read_text()


def test_table2_uses_the_large_teacher(study):
    rows = read_table(study, "table2")
    assert [r["system"] for r in rows] == ["Teacher", *SYSTEMS[2:]]
    assert rows[0]["run"] == "sft/teacher_l"
    assert all(r["run"].startswith("kd/teacher_l/") for r in rows[1:])


def test_table3_sets_the_seeds_baselines_beside_self_evolution_kd(study):
    rows = read_table(study, "table3")
    systems = ["Teacher", "Student", "Forward KD", "SKEW KD", "Self-Evolution KD", *BASELINES]
    assert [r["system"] for r in rows] == systems
    assert all(r["run"].startswith("kd/teacher/") for r in rows[2:])  # Table 1's teacher
    for row in rows:
        assert all(0 <= float(row[f"bleu_{d}"]) <= 100 for d in DIRECTIONS)
    for row in rows[3:]:  # † against Forward KD
        assert all(0 <= float(row[f"p_{d}"]) <= 1 for d in DIRECTIONS)
    runs = {r["system"]: r["run"] for r in rows}
    assert runs["SeqKD"] == "kd/teacher/seq_kd-beam2"
    assert runs["GKD"] == "kd/teacher/gkd-jsd0.5-onp0.5-stemp1-stopk0-stopp1"
    # the teacher's outputs were generated once per setting and read by the runs that train on them
    outputs = study / "results" / "teacher_outputs" / "teacher"
    assert sorted(p.name for p in outputs.iterdir()) == ["beam2", "sample-t1-k0-p1"]
    logs = study / "results" / "logs" / "kd" / "teacher"
    assert (
        "teacher outputs results/teacher_outputs/teacher/beam2/seed1"
        in (logs / "seq_inter-beam2" / "seed1.log").read_text()
    )
    summary = json.loads(
        (study / "results/models" / runs["f-DISTILL RKL"] / "seed1/train_summary.json").read_text()
    )
    assert summary["onpolicy"]["generation_seconds"] > 0
    assert "| GKD |" in (study / "results" / "table3.md").read_text()


def test_one_teacher_generation_serves_every_run_that_reads_it(study, tmp_path):
    """A changed beam size: one teacher_outputs job, and only seq_kd and seq_inter retrain."""
    extra = _override(tmp_path, "kd: {num_beams: 3}\n")
    output = snakemake(study, "-n", "--forceall", "results/table3.csv", extra_configs=extra)
    assert planned_jobs(output)["teacher_outputs"] == 2  # beam3 and the samples, once each
    jobs = planned_jobs(snakemake(study, "-n", "results/table3.csv", extra_configs=extra))
    assert jobs["teacher_outputs"] == 1 and jobs["kd"] == 2
    assert "results/teacher_outputs/teacher/beam3/seed1" in snakemake(
        study, "-n", "results/table3.csv", extra_configs=extra
    )


@pytest.mark.parametrize(
    "text, target, kd_runs, suffix",
    [
        # issue 11, choice 1: only Self-Evolution KD (Table 1 has no sekd_topk row)
        ("kd: {difficulty: cross_entropy}\n", "results/table1.csv", 1, "-difficulty.cross_entropy"),
        # choice 4: only the top-K% runs (Fig. 2b: K = 20 in the micro config)
        (
            "kd: {topk_pool: optimizer_batch}\n",
            "results/figures/fig2b.png",
            1,
            "-pool.optimizer_batch",
        ),
        # choice 5: only the runs with a progressive β (Fig. 3: 0.5 -> 0 in the micro config)
        ("kd: {progressive_beta_tokens: all}\n", "results/figures/fig3.png", 1, "-betatokens.all"),
        # choice 6: every off-policy KD row of Table 1
        (
            "kd: {normalisation: optimizer_batch}\n",
            "results/table1.csv",
            5,
            "-norm.optimizer_batch",
        ),
    ],
    ids=["difficulty", "pool", "betatokens", "norm"],
)
def test_a_run_option_reruns_only_the_runs_it_applies_to(
    study, tmp_path, text, target, kd_runs, suffix
):
    """The KD runs a target needs, with and without the option: only the runs it applies to get
    other names (hence new jobs); every other run, and its results, is shared. Compared on forced
    dry runs, so that runs already trained (e.g. by the sensitivity test) do not matter."""

    def kd_outputs(extra: tuple[str, ...]) -> set[str]:
        output = snakemake(study, "-n", "--forceall", target, extra_configs=extra)
        return {p for p in planned_outputs(output) if p.startswith("results/models/kd/")}

    default, switched = kd_outputs(()), kd_outputs(_override(tmp_path, text))
    new = switched - default
    assert len(new) == len(default - switched) == kd_runs
    assert all(p.endswith(f"{suffix}/seed1") for p in new)
    assert not any(suffix in p for p in switched - new)


def test_sampling_and_init_switches_rerun_only_the_runs_they_affect(study, tmp_path):
    extra = _override(tmp_path, "kd: {student_temperature: 0.7}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table3.csv", extra_configs=extra))
    assert jobs["kd"] == 4 and "teacher_outputs" not in jobs  # fd_rkl, fd_js, fd_tvd, gkd
    extra = _override(tmp_path, "student_init: {fdistill: word_kd_student}\n")
    output = snakemake(study, "-n", "results/table3.csv", extra_configs=extra)
    assert planned_jobs(output)["kd"] == 4  # the four f-DISTILL runs, from the word_kd student
    assert (
        "results/models/kd/teacher/word_kd-lam0.5/seed1, results/models/sft/teacher/seed1" in output
    )
    extra = _override(tmp_path, "student_init: {kd: sft_student}\n")
    output = snakemake(study, "-n", "results/table1.csv", extra_configs=extra)
    jobs = planned_jobs(output)
    assert jobs["kd"] == 5 and "sft" not in jobs  # every KD row of Table 1, from the SFT'd student
    assert "results/models/sft/student/seed1, results/models/sft/teacher/seed1" in output
    extra = _override(tmp_path, "sequences: {max_new_tokens: 10}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table3.csv", extra_configs=extra))
    assert jobs["teacher_outputs"] == 2 and jobs["kd"] == 7  # every run that generates or reads one
    extra = _override(tmp_path, "sequences: {batch_size: 3}\n")
    assert set(planned_jobs(snakemake(study, "-n", extra_configs=extra))) <= {"report", "all"}


def test_every_figure_with_its_numbers(study):
    for fig in FIGURES:
        png = study / "results" / "figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (study / "results" / "figures" / f"{fig}.pdf").read_bytes()[:4] == b"%PDF"
        with open(study / "results" / "figures" / f"{fig}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows, fig
    with open(study / "results" / "figures" / "fig2a.csv", newline="") as f:
        xs = sorted(float(r["x"]) for r in csv.DictReader(f))
    assert xs == [0.4, 0.6]


def test_report_shows_every_table_and_figure(study):
    html = (study / "results" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES) + len(TABLE_CURVES)
    assert "Table1" in html and "Table2" in html and "28.83" in html  # the paper's number
    assert "Table3" in html
    # the compute budget: every row of every table, with its trained model's parameters
    assert "<h2>Compute budget</h2>" in html
    compute = html.split("<h2>Compute budget</h2>")[1]
    assert compute.count("<h3>table") == 3 and "f-DISTILL RKL" in compute


def test_training_curves_of_every_run(study):
    """Each training run's curves CSV; the hard fraction of a threshold run and a top-K run."""
    curves = study / "results" / "curves"
    with open(curves / "kd/teacher/sekd_topk-lam0.5-beta0.5-k20/seed1.csv", newline="") as f:
        topk = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in topk]
    assert steps == sorted(steps) and len(steps) > 1
    assert all(0.0 < float(r["hard_fraction"]) <= 0.3 for r in topk)  # about K = 20%
    with open(curves / "sft/student/seed1.csv", newline="") as f:
        assert {r["hard_fraction"] for r in csv.DictReader(f)} == {""}  # SFT splits no tokens
    for table in TABLE_CURVES:
        assert (curves / f"{table}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (study / "results" / "report.html").read_text()
    assert "<h2>Training curves</h2>" in html and "§5.2.1" in html


def test_artifact_holds_the_study(study):
    import hashlib
    import tarfile

    with tarfile.open(study / "results" / "artifact.tar.gz") as tar:
        names = {m.name.removeprefix("sekd-artifact/"): m for m in tar.getmembers()}
        manifest = tar.extractfile(names["MANIFEST.sha256"]).read().decode().splitlines()
        for line in manifest:
            digest, name = line.split("  ", 1)
            assert hashlib.sha256(tar.extractfile(names[name]).read()).hexdigest() == digest
    listed = {line.split("  ", 1)[1] for line in manifest}
    assert {"REVISION", "config.resolved.yaml", "environment/pip-freeze.txt"} <= listed
    assert {
        "workflow/workflow/Snakefile",
        "workflow/requirements/train.txt",
        "workflow/workflow/envs/train.yaml",
    } <= listed
    assert {"results/table1.csv", "results/figures/fig5.png", "results/report.html"} <= listed
    assert any(n.startswith("results/logs/kd/") for n in listed)
    assert any(n.startswith("results/benchmarks/sft/") for n in listed)
    assert not any(n.startswith("results/models/") for n in listed)


def test_every_score_comes_from_real_hypotheses(study):
    rows = read_table(study)
    for row in rows:
        for d in DIRECTIONS:
            hyp_file = study / "results" / "hyps" / row["run"] / "seed1" / "wmt22" / f"{d}.txt"
            refs = [r["target"] for r in data.read_jsonl(study / f"results/data/wmt22/{d}.jsonl")]
            hyps = score.read_lines(hyp_file)
            assert len(hyps) == len(refs) == 5
            assert any(h.strip() for h in hyps), f"{hyp_file} is empty"
            recomputed = score.bleu(hyps, refs)["bleu"]
            assert float(row[f"bleu_{d}"]) == pytest.approx(recomputed, abs=1e-3)
            saved = json.loads(
                (study / "results/scores" / row["run"] / "seed1/wmt22" / f"{d}.json").read_text()
            )
            assert saved["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_the_models_are_pretrained_before_sft_and_the_reading_is_written(study):
    """tests/micro.yaml: 4 pretraining steps on 100 pairs of each language pair, side by side."""
    results = study / "results"
    text = (results / "data" / "pretrain.txt").read_text(encoding="utf-8").splitlines()
    assert len(text) == 2 * 100 * 2  # two language pairs, both sides
    for name in ("student", "teacher", "teacher_l"):
        summary = json.loads(
            (results / "models/pretrained" / name / "train_summary.json").read_text()
        )
        assert summary["variant"] == "pretrain" and summary["global_steps"] == 4
    for name in ("student", "teacher"):
        log = (results / "logs/sft" / name / "seed1.log").read_text()
        assert f"base model results/models/pretrained/{name}," in log
    reading = (results / "reading.md").read_text(encoding="utf-8")
    assert reading.startswith("## What the miniature shows: table1")
    assert "- Self-Evolution KD minus Forward KD, Avg. BLEU:" in reading
    assert "<h2>What the miniature shows: table1</h2>" in (results / "report.html").read_text()


def test_kd_students_start_from_the_student_base_model(study):
    logs = sorted((study / "results" / "logs" / "kd").rglob("*.log"))
    assert len(logs) >= 10
    for log in logs:
        text = log.read_text()
        teacher = log.relative_to(study / "results" / "logs" / "kd").parts[0]
        assert "base model results/models/pretrained/student" in text
        if "." in teacher:  # kd/<teacher>.<source>/...: the teacher store, no teacher model
            model, source = teacher.split(".")
            assert f"teacher store results/teacher_store/{model}/{source}/seed1" in text
        elif "/seq_kd-" in str(log) or "/seq_inter-" in str(log):  # outputs only, no logits
            assert f"teacher not loaded, teacher outputs results/teacher_outputs/{teacher}/" in text
        else:
            assert f"teacher results/models/sft/{teacher}/seed1" in text
        if "/sekd" in str(log) or "/skew_kd" in str(log) or "/noevo" in str(log):
            assert "hard_fraction" in text


def test_sparse_store_fidelity_report(study):
    """mini.yaml asks for the fidelity of a sparse store (K = 64) on sekd: loss, split and
    gradient agreement with the online teacher, and the BLEU of runs trained both ways."""
    store = study / "results" / "teacher_store" / "teacher" / "sparse64" / "seed1"
    meta = json.loads((store / "store.json").read_text())
    assert meta["mode"] == "sparse" and meta["samples"] == 64 and meta["num_tokens"] > 0
    assert not (store.parent / "seed1.tmp").exists()
    report = json.loads((study / "results" / "teacher_store" / "fidelity.json").read_text())
    sekd = report["loss"]["sekd"]
    assert sekd["tokens"] > 0 and math.isfinite(sekd["loss_difference"])
    assert 0 <= sekd["split_agreement"] <= 1 and 0 < sekd["grad_cosine"] <= 1 + 1e-9
    assert sekd["hard_fraction_online"] is not None
    bleu = report["bleu"]["sekd"]
    assert set(bleu["directions"]) == set(DIRECTIONS)
    for d, row in bleu["directions"].items():
        online = json.loads(
            (
                study
                / "results/scores/kd/teacher/sekd-lam0.5-beta0.5-gamma0.4/seed1/wmt22"
                / f"{d}.json"
            ).read_text()
        )["bleu"]
        assert row["online"] == pytest.approx(online)
        assert row["difference"] == pytest.approx(row["store"] - row["online"])
    md = (study / "results" / "teacher_store" / "fidelity.md").read_text()
    assert "| sekd |" in md and "split agreement" in md
    assert "Teacher store fidelity (teacher.sparse64" in (study / "results/report.html").read_text()


def test_store_mode_change_reruns_only_the_kd_runs(study, tmp_path):
    """Table 1 read from a full store: one store, the KD rows retrained; no SFT, no data."""
    extra = _override(tmp_path, "teacher_store: {mode: full}\n")
    output = snakemake(study, "-n", "results/table1.csv", extra_configs=extra)
    jobs = planned_jobs(output)
    assert jobs["teacher_store"] == 1 and jobs["kd"] == 5
    assert jobs["decode"] == jobs["bleu"] == 5 * 4
    assert not {"sft", "tokenizer", "init_model", "prepare_train"} & set(jobs)
    assert "results/models/kd/teacher.full/reverse_kd-lam0.5/seed1" in output
    # a sparse store cannot serve reverse_kd: it keeps its online run (up to date)
    extra = _override(tmp_path, "teacher_store: {mode: sparse}\n")
    output = snakemake(study, "-n", "results/table1.csv", extra_configs=extra)
    assert planned_jobs(output)["kd"] == 3  # forward_kd, noevo_kd, skew_kd; sekd exists
    assert "kd/teacher.sparse64/reverse_kd" not in output


def test_store_speed_keys_rerun_nothing_and_its_seed_reruns_its_runs(study, tmp_path):
    extra = _override(tmp_path, "teacher_store: {batch_size: 3}\n")
    # only the report, which shows the resolved config
    assert set(planned_jobs(snakemake(study, "-n", extra_configs=extra))) <= {"report", "all"}
    extra = _override(tmp_path, "teacher_store: {seed: 7}\n")
    jobs = planned_jobs(snakemake(study, "-n", extra_configs=extra))
    assert jobs["teacher_store"] == 1 and jobs["kd"] == 1 and "sft" not in jobs


def test_up_to_date_workflow_plans_nothing(study):
    assert planned_jobs(snakemake(study, "-n")) == {}


def _override(tmp_path, text: str) -> tuple[str, ...]:
    path = tmp_path / "override.yaml"
    path.write_text(text)
    return (str(path),)


def test_changing_the_beam_plans_no_training(study, tmp_path):
    jobs = planned_jobs(
        snakemake(study, "-n", extra_configs=_override(tmp_path, "decoding: {num_beams: 2}\n"))
    )
    assert jobs["decode"] > 0 and jobs["bleu"] == jobs["decode"]
    assert not {"sft", "kd", "init_model", "tokenizer"} & set(jobs)


def test_changing_gamma_reruns_only_self_evolution_kd(study, tmp_path):
    jobs = planned_jobs(
        snakemake(
            study,
            "-n",
            "results/table1.csv",
            extra_configs=_override(tmp_path, "kd: {gamma: 0.3}\n"),
        )
    )
    assert jobs == {"kd": 1, "decode": 4, "bleu": 4, "significance": 1, "table": 1, "fit": 1}


def test_adding_a_gamma_value_plans_only_that_point(study, tmp_path):
    extra = _override(tmp_path, "figures: {fig2a: {gamma: [0.4, 0.6, 0.5]}}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/figures/fig2a.png", extra_configs=extra))
    # one KD run, decoded and scored on the two validation directions, and the figure
    assert jobs == {"kd": 1, "decode": 2, "bleu": 2, "figure": 1}


def test_sft_and_data_switches_at_their_defaults_rerun_nothing(study, tmp_path):
    """Issue 11's choices 3 and 7 written out at their defaults: no job's params change."""
    text = "training: {sft_selection: valid_loss, truncation: target_tail}\n"
    text += "prompt: {response_newline: true}\n"
    jobs = planned_jobs(snakemake(study, "-n", extra_configs=_override(tmp_path, text)))
    assert set(jobs) <= {"report", "all"}  # only the report, which shows the resolved config


def test_sft_selection_reruns_the_sft_runs_and_what_reads_them(study, tmp_path):
    extra = _override(tmp_path, "training: {sft_selection: last}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table1.csv", extra_configs=extra))
    assert jobs["sft"] >= 1 and jobs["kd"] >= 1 and jobs["decode"] >= 1
    assert not {"tokenizer", "init_model", "prepare_train", "prepare_eval"} & set(jobs)


def test_truncation_reruns_training_but_not_the_tokenizer(study, tmp_path):
    extra = _override(tmp_path, "training: {truncation: keep_eos}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table3.csv", extra_configs=extra))
    assert jobs["sft"] >= 1 and jobs["kd"] >= 1 and jobs["teacher_outputs"] >= 1
    assert not {"tokenizer", "init_model", "prepare_train", "prepare_eval"} & set(jobs)


def test_the_template_reruns_every_job_that_builds_a_prompt(study, tmp_path):
    extra = _override(tmp_path, "prompt: {response_newline: false}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table3.csv", extra_configs=extra))
    # the miniature's BPE is trained on the prompts; then training, teacher outputs, decoding
    assert {"tokenizer", "sft", "kd", "teacher_outputs", "decode"} <= set(jobs)
    assert not {"prepare_train", "prepare_eval"} & set(jobs)


def planned_outputs(output: str) -> set[str]:
    return {
        path.strip()
        for line in output.splitlines()
        if line.startswith("    output: ")
        for path in line.removeprefix("    output: ").split(",")
    }


def test_a_held_out_language_pair_is_a_config_change(tmp_path, monkeypatch):
    """is-en (in ALMA, not in the mirror) added to the test set: only its own jobs appear. Planned
    to be fetched from data.url: the mirror lacks it, so a plan reading from the mirror stops
    (tests/test_config_strict.py)."""
    monkeypatch.delenv("SEKD_DATA_MIRROR", raising=False)
    extra = _override(
        tmp_path,
        "data:\n  test_directions: [en-de, de-en, en-cs, cs-en, is-en]\n"
        f"  sha256: {{isen/test.is-en.json: '{'0' * 64}'}}\n",
    )
    base = planned_outputs(snakemake(tmp_path / "a", "-n"))
    grown = planned_outputs(snakemake(tmp_path / "b", "-n", extra_configs=extra))
    assert base < grown
    new = grown - base
    assert all("is-en" in path or "isen" in path for path in new), new
    assert "resources/alma/isen/test.is-en.json" in new
    assert "results/hyps/sft/student/seed1/wmt22/is-en.txt" in new


def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {learning_rate: fast}\n")
    cmd = [
        str(SNAKEMAKE), "-s", str(SNAKEFILE), "-d", str(tmp_path / "w"), "-n",
        "--configfile", *CONFIGS, str(bad),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config key 'training.learning_rate'" in proc.stdout + proc.stderr


def test_sensitivity_has_one_row_per_alternative_with_finite_numbers(study):
    from sekd.plan.config import load_config

    snakemake(study, "results/sensitivity.csv")
    config = load_config(ROOT / "config" / "config.yaml", *CONFIGS)
    alternatives = config["sensitivity"]["alternatives"]
    with open(study / "results" / "sensitivity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["option"], r["value"]) for r in rows] == [
        (a["option"], a["value"]) for a in alternatives
    ]
    for row in rows:
        for key in ("bleu_avg", "delta_avg", "default_bleu_avg", "hard_fraction"):
            assert math.isfinite(float(row[key])), (row["label"], key)
    assert (study / "results" / "figures" / "sensitivity.png").stat().st_size > 0
