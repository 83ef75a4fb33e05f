"""kd.gamma travels as a value from the config to `d > gamma` in five hops (issue 19): the run
name is an identifier computed from the values, never read back for one.

    config kd.gamma
    1. the plan: sekd.plan.study.planned_variant, a Variant holding the float
    2. the kd rule's `run` param: sekd.plan.jobs.Jobs.kd_values (Variant.values), via common.smk
       kd_values
    3. the job: sekd.train.job.TrainJob.plan (scripts/kd.py: Variant.from_values)
    4. the loss: sekd.train.losses.distill_loss(gamma=...) (DistillTrainer: Variant.loss_kwargs)
    5. the kernel: `d > h.gamma` (sekd.train.chunked._self_evolution, Hyper.gamma)
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from conftest import tiny_job

from sekd.data import alma as data
from sekd.plan import study
from sekd.plan.config import load_config
from sekd.plan.jobs import Jobs
from sekd.plan.variants import Variant
from sekd.train import chunked, trainer
from sekd.train import job as train

ROOT = Path(__file__).resolve().parents[1]
GAMMA = 1e-7  # a value a text round trip once turned into 0


def _config() -> dict:
    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")
    config["kd"]["gamma"] = GAMMA
    return config


def test_the_rules_hand_the_plans_values_to_the_job():
    """Hops 2 and 3 as the workflow spells them: rule kd's `run` param is common.smk's
    kd_values, which returns sekd.plan.jobs.Jobs.kd_values; scripts/kd.py builds the job's plan from
    it and names no hyper-parameter."""
    rules = (ROOT / "workflow" / "rules" / "train.smk").read_text(encoding="utf-8")
    kd_rule = rules[rules.index("rule kd:") :]
    assert re.search(r"^\s+run=kd_values,", kd_rule, re.M)
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8")
    body = common[common.index("def kd_values(") :].split("\n\n\n")[0]
    assert "JOBS.kd_values(wildcards.variant)" in body
    # a param derived from the output path: Snakemake records none, so every existing KD job
    # keeps its recorded params (a changed value is a changed run name, a new job, as before)
    assert body.startswith("def kd_values(wildcards, output):")
    script = (ROOT / "workflow" / "scripts" / "kd.py").read_text(encoding="utf-8")
    assert "plan=Variant.from_values(snakemake.params.run)" in script
    assert "gamma" not in script and "parse" not in script


def test_gamma_reaches_d_greater_than_gamma_in_five_hops(
    tiny_records, tiny_model_dir, tmp_path, monkeypatch
):
    config = _config()
    name = study.kd_run(config, "sekd").rsplit("/", 1)[1]
    seen: list[tuple[str, float]] = []
    # 1. the plan
    variant = study.planned_variant(config, name)
    seen.append(("plan", variant.hparams["gamma"]))
    # 2. the rule's param, as Snakemake hands it to the script (pickled)
    param = pickle.loads(pickle.dumps(Jobs(config).kd_values(name)))
    seen.append(("param", param["hparams"]["gamma"]))
    # 3. the job, as scripts/kd.py builds it
    data.write_jsonl(tiny_records, tmp_path / "train.jsonl")
    job = tiny_job(
        tmp_path / "kd", tiny_model_dir, tmp_path / "train.jsonl", teacher=tiny_model_dir
    )
    plan = Variant.from_values(param)
    job = train.TrainJob(**{**vars(job), "variant": name, "plan": plan})
    seen.append(("job", job.plan.hparams["gamma"]))
    # 4. and 5.: spies at the loss and at the kernel's split
    loss = trainer.distill_loss

    def distill_loss(*args, **kwargs):
        seen.append(("distill_loss", kwargs["gamma"]))
        return loss(*args, **kwargs)

    split = chunked._self_evolution

    def self_evolution(ch, h, mode, *args, **kwargs):
        if mode == "gamma":
            seen.append(("d > gamma", h.gamma))
        return split(ch, h, mode, *args, **kwargs)

    monkeypatch.setattr(trainer, "distill_loss", distill_loss)
    monkeypatch.setattr(chunked, "_self_evolution", self_evolution)
    train.run(job)
    hops = list(dict.fromkeys(hop for hop, _ in seen))
    assert hops == ["plan", "param", "job", "distill_loss", "d > gamma"]
    assert all(value == GAMMA and type(value) is float for _, value in seen), seen


def test_no_code_reads_a_value_back_from_a_name():
    """Run names, teacher sources and generation segments are identifiers: the plan is looked up
    by them (planned_variant, planned_generation, Jobs.source), nothing parses them back."""
    readers = re.compile(r"def (parse_(?:variant|generation|source)|from_name)\b")
    found = [
        f"{path.relative_to(ROOT)}: {m[1]}"
        for path in sorted((ROOT / "workflow").rglob("*.py"))
        for m in readers.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []
