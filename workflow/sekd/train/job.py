"""SFT and KD training runs (§4.2): the job spec, the run, and one rank's training.

* SFT (teachers and student): eq. 2 on the ParroT-formatted training set, keeping the checkpoint
  with the lowest loss on the WMT21 validation set.
* KD: the student starts from the same base model as the student's SFT (not from the SFT'd
  student), same data and hyper-parameters; the SFT'd teacher is frozen in eval mode and the loss
  is `sekd.train.losses.distill_loss` with the run's objective (sekd.train.trainer). The final
  checkpoint is kept. The fraction of hard tokens per logging interval is logged as
  ``hard_fraction``.
* Pretraining (the miniature's models built from `init`, before SFT): the same cross-entropy on
  blocks of monolingual text with no prompt masked (`TrainJob.pretrain_text`,
  sekd.data.pretraining) for `training.max_steps` steps; the last checkpoint is kept.
* On-policy KD (objectives whose sequences end in "student"): the student samples its training
  targets in the step (sekd.train.onpolicy, sekd.train.trainer), seeded by the run's seed, each
  example's "index" and the epoch; the logs and the summary's ``onpolicy`` hold the realised
  on-policy fraction, the share of step time spent sampling and the empty and truncated samples.

Scale-out (docs/deepspeed.md): with ``training.deepspeed`` (a ZeRO-3 config) or more than one
process, `run` starts ``torchrun ... -m sekd.train.job job.json`` (sekd.train.distributed) and every
rank trains; the student is partitioned by the Trainer's DeepSpeed integration and the frozen
teacher by a second, inference-only DeepSpeed engine. Checkpoints (every ``training.save_steps``,
and on SIGUSR1/SIGTERM/SIGINT; sekd.train.checkpoints) let a rerun of a killed or requeued job
resume from the last complete one. A job owns its run while it trains, and stops (checkpointed) when
the Snakemake process that started it is gone (sekd.train.run_lock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import PreTrainedModel, TrainingArguments, set_seed

from sekd import atomic, gpu_required, models
from sekd.data import pretraining
from sekd.data import tokenizer as tokenizers
from sekd.data.batches import PadCollator, encode_files, read_records
from sekd.data.prompts import DEFAULT_TRUNCATION, RESPONSE_NEWLINE
from sekd.evaluate import decode
from sekd.plan import allocation
from sekd.plan.objectives import OBJECTIVES, Objective, get_objective
from sekd.plan.run_names import RUNTIME_KEYS, runtime_values, serves
from sekd.plan.variants import Variant
from sekd.teacher import outputs as teacher_outputs
from sekd.teacher.store import TeacherStore
from sekd.train import distributed, lora
from sekd.train import run_lock as runlock
from sekd.train import sft_checkpoint as selection
from sekd.train.checkpoints import (
    EXIT_PREEMPTED,
    PREEMPTED,
    CheckpointCallback,
    Signals,
    StepTimer,
    barrier,
    completed,
    prepare_checkpoints,
    stop_if_signalled,
)
from sekd.train.distributed import PreemptedError
from sekd.train.onpolicy import OnPolicy
from sekd.train.trainer import DistillTrainer

log = logging.getLogger("sekd.train.job")

REPOSITORY = Path(__file__).resolve().parents[2]  # config paths are relative to it


@dataclass
class TrainJob:
    """Everything one training run reads; built by the rule from its own slice of the config."""

    variant: str  # "sft" or a KD run name (sekd.plan.variants): the run's identity, in logs
    base_model: str  # a local directory or hub id
    tokenizer_dir: str
    train_files: list[str]
    out_dir: str
    checkpoint_dir: str
    languages: dict[str, str]
    training: dict  # the config's `training` section
    seed: int
    dtype: str = "float32"
    trust_remote_code: bool = False
    valid_files: list[str] = field(default_factory=list)
    teacher_model: str | None = None  # SFT'd teacher directory (KD only)
    teacher_store: str | None = None  # or a store of its outputs (sekd.teacher.store; KD only)
    teacher_dtype: str = "float32"
    # the teacher's outputs for the training prompts (sekd.teacher.outputs; rule teacher_outputs),
    # for objectives that train on them (sekd.plan.objectives.SEQUENCE_SOURCES)
    teacher_outputs: str | None = None
    # the config's `sequences` section (max_new_tokens of the student's on-policy samples)
    sequences: dict = field(default_factory=dict)
    revision: str | None = None  # of base_model when it is a hub id (models.<name>.revision)
    model_key: str = "models"  # the config key of the trained model, for errors (models.<name>)
    teacher_key: str = "the teacher"  # and of the teacher (KD only)
    threads: int = 1  # CPU threads (of a rank; `run` shares the node's among its ranks)
    # GPUs per node the job asked for (its resources: sekd.plan.allocation.gpus_per_node); the ranks
    # per node are what SLURM gave (SLURM_GPUS_ON_NODE) when it says, else this, when
    # training.nproc_per_node is unset (sekd.train.distributed.processes_per_node)
    gpus_per_node: int = 0
    resume_from_checkpoint: str | None = None  # set by `run`, read by the ranks
    # prompt.response_newline (the prompts' ending; sekd.data.prompts.build_prompt)
    response_newline: bool = RESPONSE_NEWLINE
    # training.sft_selection: valid_bleu's decoding and scoring (tokenize, max_new_tokens,
    # batch_size; sekd.train.sft_checkpoint); None for every other run
    valid_bleu: dict | None = None
    # a KD run's objective, hyper-parameter values and run options, from the plan (rule kd's `run`
    # param, sekd.plan.study.planned_variant); None for SFT. Its name is `variant`.
    plan: Variant | None = None
    # the pretraining text (rule pretrain, sekd.data.pretraining): the run trains a causal LM on
    # its blocks of training.max_length tokens for training.max_steps steps, instead of SFT
    pretrain_text: str | None = None
    # models.<name>.lora when the run trains a LoRA adapter (training.finetune, or a KD run's
    # option finetune: lora; sekd.plan.jobs.Jobs.lora), else None: every weight trains
    lora: dict | None = None
    # the run (sft/<model>, kd/<teacher>/<variant>, pretrain/<model>), without the seed: the
    # experiment's name in training.report_to's trackers
    run_name: str = ""
    # where those trackers write (`tracking_dir`: beside the rule's log); None: nowhere
    tracking_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.plan, dict):  # read back from job.json (sekd.train.distributed.launch)
            self.plan = Variant.from_values(self.plan)


def rule_job(job_slice: dict, resources, **fields) -> TrainJob:
    """The TrainJob of an sft or kd rule: its params' config slice (without RUNTIME_KEYS), the
    runtime keys and GPUs from its resources (changing them reruns nothing), and `fields`."""
    runtime = runtime_values(resources, RUNTIME_KEYS)
    deepspeed = runtime["deepspeed"]
    if deepspeed and not Path(deepspeed).exists():
        # relative to the repository (as config.yaml names it) when not to the working directory
        runtime["deepspeed"] = str(REPOSITORY / deepspeed)
    return TrainJob(
        response_newline=job_slice.get("prompt", {}).get("response_newline", RESPONSE_NEWLINE),
        valid_bleu=job_slice.get("valid_bleu"),
        languages=job_slice["languages"],
        training={**job_slice["training"], **runtime},
        dtype=job_slice["dtype"],
        trust_remote_code=job_slice["trust_remote_code"],
        revision=job_slice.get("revision"),
        lora=job_slice.get("lora"),
        gpus_per_node=allocation.gpus_per_node(resources),
        **fields,
    )


def tracking_dir(log_file: str) -> str:
    """Where a run's training.report_to trackers write: beside the rule's log file, a folder of
    the same name (results/logs/sft/student/seed1.log -> results/logs/sft/student/seed1)."""
    return str(Path(log_file).with_suffix(""))


def run(job: TrainJob) -> dict:
    """Train one model and save it (safetensors) to `job.out_dir`; return the summary.

    One process without DeepSpeed trains here; otherwise torchrun starts the ranks
    (sekd.train.distributed.launch). The job owns its run while it trains (sekd.train.run_lock):
    raises `sekd.train.run_lock.RunLockedError`, before writing anything, when another live trainer
    does. Raises `sekd.train.distributed.PreemptedError` when a signal (SIGINT, SIGTERM, SIGUSR1, or
    the Snakemake process that started the job going away) stopped the run after a checkpoint, or
    before any step (from the start: the signals are caught for the whole run), and
    `sekd.errors.DiskFullError` when a checkpoint or the model ran out of space (the previous
    checkpoint is left: a rerun resumes from it).
    """
    with runlock.hold(job.checkpoint_dir), runlock.stop_with_snakemake(), Signals() as signals:
        return _run(job, signals)


def _run(job: TrainJob, signals: Signals) -> dict:
    """`run` once the run is owned; `signals`: those received since it started."""
    t = job.training
    distributed.restore_allocation()  # a SLURM batch step that lost its allocation's variables
    nodes = distributed.slurm_nodes()
    nproc = distributed.processes_per_node(t.get("nproc_per_node"), job.gpus_per_node)
    deepspeed = t.get("deepspeed")
    if deepspeed:
        path = Path(deepspeed)
        if not path.is_file():
            raise FileNotFoundError(f"training.deepspeed: no DeepSpeed config at {path}")
        t = {**t, "deepspeed": str(path.resolve())}
    world_size = nproc * nodes.count
    job = replace(job, training=t)
    job = replace(job, resume_from_checkpoint=prepare_checkpoints(job, world_size, signals))
    resume = job.resume_from_checkpoint
    stop_if_signalled(signals, job.checkpoint_dir, resume, "before training started")
    if world_size == 1 and not deepspeed:
        return _train(job, signals)
    # CPU threads per rank: the node's CPUs (the SLURM allocation's, else the rule's threads) shared
    cpus = int(os.environ.get("SLURM_CPUS_ON_NODE") or job.threads)
    job = replace(job, threads=max(1, cpus // nproc))
    checkpoint_dir = Path(job.checkpoint_dir)
    distributed.launch(
        job,
        nproc,
        checkpoint_dir / "job.json",
        checkpoint_dir / PREEMPTED,
        earlier=lambda: signals.received,
    )
    return json.loads((Path(job.out_dir) / "train_summary.json").read_text())


def _train(job: TrainJob, signals: Signals | None = None) -> dict:
    """One rank's training (the only rank when not launched by torchrun); `signals`: those caught
    since the job started (a torchrun rank catches them from here)."""
    if signals is not None:
        return _train_catching(job, signals)
    with Signals() as caught:
        return _train_catching(job, caught)


def _train_catching(job: TrainJob, signals: Signals) -> dict:
    """`_train` with the signals caught: one arriving while the models load stops the run at
    the first step (CheckpointCallback.on_train_begin)."""
    models.configure_torch_threads(job.threads)
    variant = _variant(job)
    t = job.training
    chosen = selection.sft_selection(t) if variant.objective == "sft" else "last"
    select_best = chosen != "last" and bool(job.valid_files)
    # Built before any from_pretrained: with a ZeRO-3 config this makes the weights load
    # partitioned across the ranks (HfDeepSpeedConfig).
    args = _training_arguments(job, select_best, chosen)
    set_seed(job.seed)
    tok = tokenizers.load(job.tokenizer_dir)
    train_set, valid_set = _datasets(job, tok, select_best)
    for index, example in enumerate(train_set):
        example["index"] = index  # its position: teacher store rows, on-policy sample seeds
    # Master weights in fp32; mixed precision (bf16 autocast) on GPUs, as DeepSpeed does.
    # Compatibility with results/tokenizer before any step (a named error, not an IndexError).
    models.check_tokenizer(
        job.base_model, tok, f"{job.model_key}.pretrained", job.revision, job.trust_remote_code
    )
    model = models.load_causal_lm(job.base_model, "float32", job.trust_remote_code, job.revision)
    models.check_vocab(model, tok, job.base_model, job.model_key)
    sources = {"base": models.provenance(job.base_model, job.revision, model)}
    if job.lora:  # only the adapter trains (sekd.train.lora); saved merged into the base
        model = lora.wrap(model, job.lora, f"{job.model_key}.lora")
    teacher, store = _teacher(job, variant, train_set, model.config.vocab_size, args, tok)
    if variant.objective != "sft":
        sources["teacher"] = _teacher_source(job)
    _log_start(job, len(train_set), store)
    checkpoints = CheckpointCallback(t.get("save_steps"), job.checkpoint_dir, signals)
    timer = StepTimer()
    sampling = _onpolicy(job, variant, tok, decode.end_ids(model, tok))
    callbacks = [checkpoints, timer]
    if select_best and chosen == "valid_bleu":
        callbacks.append(_valid_bleu(job, tok))
    trainer = DistillTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=valid_set,
        data_collator=PadCollator(tok.pad_token_id, store, prompt_fields=sampling is not None),
        variant=variant,
        teacher=teacher,
        onpolicy=sampling,
        step_timer=timer,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=job.resume_from_checkpoint)
    summary = _summary(job, variant, trainer, timer, sources, chosen)
    _save(trainer, tok, job, summary)
    return summary


def _valid_bleu(job: TrainJob, tok) -> selection.ValidBleu:
    """training.sft_selection: valid_bleu's callback on the validation records."""
    if job.valid_bleu is None:
        raise ValueError(
            "training.sft_selection is valid_bleu but the job has no decoding settings "
            "(TrainJob.valid_bleu: tokenize, max_new_tokens, batch_size; sekd.plan.jobs.Jobs.sft)"
        )
    options = {**job.valid_bleu, "response_newline": job.response_newline}
    return selection.ValidBleu(tok, read_records(job.valid_files), job.languages, options)


def _formatting(job: TrainJob) -> dict:
    """The open choices of the examples' encoding: prompt.response_newline and
    training.truncation (sekd.data.prompts; absent from the job: the defaults)."""
    return {
        "response_newline": job.response_newline,
        "truncation": job.training.get("truncation", DEFAULT_TRUNCATION),
    }


def _teacher_source(job: TrainJob) -> dict:
    """Provenance of the teacher a KD run learns from (sekd.models.provenance): its store or
    model, else (sequence-level KD, no teacher loaded) the teacher recorded in its outputs."""
    if job.teacher_store or job.teacher_model:
        return models.provenance(job.teacher_store or job.teacher_model)
    meta = teacher_outputs.read_meta(job.teacher_outputs)
    return {**meta["teacher"], "outputs": job.teacher_outputs}


def _onpolicy(job: TrainJob, variant: Variant, tok, ends: list[int]) -> OnPolicy | None:
    """The student's sampling settings of an on-policy run (sekd.train.onpolicy; None for the
    others): the plan's student_* hyper-parameters and onpolicy_fraction, the config's
    sequences.max_new_tokens and training.max_length, the end ids `ends` (the tokenizer's EOS
    first) and the tokenizer's padding."""
    if not variant.student_sampling:
        return None
    if not job.sequences.get("max_new_tokens"):
        raise ValueError(
            f"{job.variant}: samples from the student but the job has no "
            "sequences.max_new_tokens (the config's `sequences` section)"
        )
    s = variant.student_sampling
    return OnPolicy(
        sequences=OBJECTIVES[variant.objective].sequences,
        fraction=variant.onpolicy_fraction,
        temperature=float(s["student_temperature"]),
        top_k=int(s["student_top_k"]),
        top_p=float(s["student_top_p"]),
        max_new_tokens=int(job.sequences["max_new_tokens"]),
        max_length=int(job.training["max_length"]),
        eos_token_id=tuple(ends),
        pad_token_id=tok.pad_token_id,
        seed=job.seed,
        vocab_limit=len(tok),
    )


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _training_arguments(
    job: TrainJob, select_best: bool, chosen: str = selection.DEFAULT
) -> TrainingArguments:
    """The Trainer's arguments from the config's `training` section (§4.2); `chosen`: the SFT
    checkpoint's selection (sekd.train.sft_checkpoint), its metric the one compared when
    `select_best`."""
    t = job.training
    deepspeed = t.get("deepspeed")
    # a job that asked for GPUs never trains on the CPU for want of CUDA (in every torchrun rank;
    # the rule's script checked its node before launching: sekd.gpu_required)
    rule = job.variant if job.variant in ("sft", "pretrain") else f"kd ({job.variant})"
    gpu_required.refuse_cpu(rule, job.gpus_per_node)
    use_cuda = torch.cuda.is_available()
    accumulation = _accumulation_steps(t)
    if deepspeed:
        distributed.accelerate_cpu_shim()
    # bf16 on GPUs when the model's dtype is bfloat16; on CPU only under a DeepSpeed config
    # that enables it (sekd.train.distributed.bf16_on_cpu)
    cpu_bf16 = not use_cuda and distributed.bf16_on_cpu(deepspeed, job.dtype)
    with distributed.bf16_without_gpu() if cpu_bf16 else contextlib.nullcontext():
        return TrainingArguments(
            output_dir=job.checkpoint_dir,
            num_train_epochs=t["epochs"],
            max_steps=t.get("max_steps") or -1,  # set by pretraining only (sekd.plan.jobs)
            per_device_train_batch_size=t["per_device_batch_size"],
            per_device_eval_batch_size=t["per_device_batch_size"],
            gradient_accumulation_steps=accumulation,
            learning_rate=t["learning_rate"],
            **_across_versions(t["warmup_ratio"]),
            lr_scheduler_type=t["lr_scheduler"],
            weight_decay=t["weight_decay"],
            logging_steps=t["logging_steps"],
            **_evaluation_arguments(t, select_best, chosen),
            save_only_model=False,  # optimizer, scheduler and RNG states too, to resume
            seed=job.seed,
            data_seed=job.seed,
            **_trackers(job),
            use_cpu=not use_cuda and not deepspeed,
            deepspeed=deepspeed or None,
            bf16=(use_cuda and job.dtype == "bfloat16") or cpu_bf16,
            fp16=use_cuda and job.dtype == "float16",
            remove_unused_columns=False,
            prediction_loss_only=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=use_cuda,
            # (DDP without DeepSpeed) every parameter gets a gradient
            ddp_find_unused_parameters=False,
            disable_tqdm=False,
        )


# training.report_to's trackers write under the run's tracking_dir, offline unless the environment
# says otherwise (a W&B or MLflow server the user set up): the variables transformers reads.
TRACKER_DIRS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}


def _trackers(job: TrainJob) -> dict:
    """The Trainer's report_to and run_name from training.report_to (none by default), with each
    tracker's folder and offline mode set in the environment: TensorBoard's event files in
    ``<tracking_dir>/tensorboard``, W&B's offline run in ``<tracking_dir>/wandb`` (project sekd,
    the run as its group), MLflow's file store in ``<tracking_dir>/mlruns`` (the run as the
    experiment). The run's name is ``<run>/seed<seed>``."""
    report_to = list(job.training.get("report_to") or [])
    if not report_to:
        return {"report_to": []}
    if job.tracking_dir is None:
        raise ValueError(
            f"{job.variant}: training.report_to={report_to} but the job has no folder "
            "for the trackers (TrainJob.tracking_dir)"
        )
    root = Path(job.tracking_dir).resolve()
    folders = {name: root / TRACKER_DIRS[name] for name in report_to}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    run = job.run_name or job.variant
    env = os.environ
    if "tensorboard" in folders:
        env["TENSORBOARD_LOGGING_DIR"] = str(folders["tensorboard"])
    if "wandb" in folders:
        env.setdefault("WANDB_MODE", "offline")
        env["WANDB_DIR"] = str(folders["wandb"])
        env.setdefault("WANDB_PROJECT", "sekd")
        env["WANDB_RUN_GROUP"] = run
    if "mlflow" in folders:
        env.setdefault("MLFLOW_TRACKING_URI", folders["mlflow"].as_uri())
        env.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it in maintenance
        env["MLFLOW_EXPERIMENT_NAME"] = run
    fields = TrainingArguments.__dataclass_fields__
    logging_dir = (
        {"logging_dir": env["TENSORBOARD_LOGGING_DIR"]}
        if ("logging_dir" in fields and "tensorboard" in folders)
        else {}
    )  # transformers 4.x reads it here, 5.x from the environment
    return {"report_to": report_to, "run_name": f"{run}/seed{job.seed}", **logging_dir}


def _accumulation_steps(t: dict) -> int:
    """Gradient accumulation steps: `training.batch_size` over per_device_batch_size x devices,
    of which it must be a multiple."""
    per_step = t["per_device_batch_size"] * _world_size()
    if t["batch_size"] % per_step:
        raise ValueError(
            f"training.batch_size={t['batch_size']} is not a multiple of "
            f"per_device_batch_size x devices = {per_step}"
        )
    return t["batch_size"] // per_step


def _evaluation_arguments(t: dict, select_best: bool, chosen: str) -> dict:
    """The Trainer's evaluation and saving arguments: when `select_best`, evaluate and save every
    `training.eval_steps` (else every epoch) and load the best checkpoint by `chosen`'s metric
    at the end; else neither."""
    interval = "steps" if t["eval_steps"] else "epoch"
    metric, greater_is_better = selection.METRICS.get(chosen, ("eval_loss", False))
    return {
        "eval_strategy": interval if select_best else "no",
        "eval_steps": t["eval_steps"],
        # Checkpoints for resuming come from CheckpointCallback (save_steps, signals); the
        # Trainer's own saves are the per-evaluation ones that select the best SFT checkpoint.
        "save_strategy": interval if select_best else "no",
        "save_steps": t["eval_steps"],
        "save_total_limit": None,  # CheckpointCallback removes old ones once one is complete
        "load_best_model_at_end": select_best,
        "metric_for_best_model": metric,
        "greater_is_better": greater_is_better,
    }


def _across_versions(warmup_ratio: float) -> dict:
    """The Trainer's arguments that transformers 4.x and 5.x spell differently: the warm-up
    (`training.warmup_ratio`, a fraction of the run's optimizer steps, rounded up) is `warmup_ratio`
    in 4.x, while 5.x dropped it and reads a `warmup_steps` below 1 as that fraction (and 1.0 as
    one step, hence the error); 4.x is told to save safetensors, which 5.x always does (and whose
    `save_safetensors` it no longer takes)."""
    fields = TrainingArguments.__dataclass_fields__
    if "warmup_ratio" in fields:
        return {"warmup_ratio": warmup_ratio, "save_safetensors": True}
    if warmup_ratio >= 1:
        raise ValueError(
            f"training.warmup_ratio={warmup_ratio}: transformers 5 reads a warm-up of 1 as one "
            "step, not the whole run; use a ratio below 1"
        )
    return {"warmup_steps": warmup_ratio}


def _datasets(job: TrainJob, tok, select_best: bool) -> tuple[list[dict], list[dict] | None]:
    """The tokenised training set and, when the best SFT checkpoint is selected, validation set.
    An objective that trains on the teacher's outputs gets the gold examples' prompts with the
    teacher's hypotheses as targets (sekd.teacher.outputs.load_examples)."""
    max_length = job.training["max_length"]
    if job.pretrain_text:
        return pretraining.pack_blocks(
            pretraining.read_text(job.pretrain_text), tok, max_length
        ), None
    formatting = _formatting(job)
    train_set = encode_files(job.train_files, tok, job.languages, max_length, **formatting)
    if not train_set:
        raise ValueError(
            f"no training example fits training.max_length={max_length} tokens "
            "(the prompt alone is longer); raise training.max_length"
        )
    objective = _objective(job)
    if objective.teacher_sequences:
        if job.teacher_outputs is None:
            raise ValueError(
                f"{job.variant}: objective {objective.name!r} trains on the teacher's outputs, "
                "but the job names none (TrainJob.teacher_outputs; rule teacher_outputs)"
            )
        train_set = teacher_outputs.load_examples(
            job.teacher_outputs,
            train_set,
            objective.pick,
            tok.eos_token_id,
            max_length,
            truncation=formatting["truncation"],
        )
    if not select_best:
        return train_set, None
    _check_eval_steps(job.training, len(train_set))
    return train_set, encode_files(job.valid_files, tok, job.languages, max_length, **formatting)


def _variant(job: TrainJob) -> Variant:
    """The job's run: its plan (KD), or SFT; a ValueError when the plan is not the run the job
    names (`TrainJob.variant`, compared as an identifier)."""
    variant = Variant("sft") if job.plan is None else job.plan
    if variant.name != job.variant and not (job.pretrain_text and job.variant == "pretrain"):
        raise ValueError(f"{job.variant}: the job's plan is the run {variant.name!r}")
    return variant


def _objective(job: TrainJob) -> Objective:
    """The declaration of the job's objective (sft for SFT)."""
    return get_objective(_variant(job).objective)


def _check_eval_steps(training: dict, examples: int) -> None:
    """ValueError if `training.eval_steps` exceeds the run's optimizer steps: the Trainer would
    then never evaluate, and §4.2's best-checkpoint selection would silently not happen."""
    eval_steps = training["eval_steps"]
    steps = math.ceil(training["epochs"] * math.ceil(examples / training["batch_size"]))
    if eval_steps is not None and eval_steps > steps:
        raise ValueError(
            f"training.eval_steps={eval_steps} is more than the run's {steps} optimizer steps "
            f"({examples} examples, batch_size {training['batch_size']}, epochs "
            f"{training['epochs']}): the best SFT checkpoint (§4.2) would never be selected; "
            "lower it, or set it to null (once per epoch)"
        )


def _teacher(
    job: TrainJob, variant: Variant, train_set: list[dict], vocab_size: int, args, tok
) -> tuple[PreTrainedModel | None, TeacherStore | None]:
    """(online teacher, teacher store): neither for SFT nor for an objective that reads no
    teacher logits (seq_kd, seq_inter: no teacher model is loaded); the store when the job
    names one (its examples then carry their "index"), else the frozen teacher on the student's
    device (under ZeRO-3, as an engine every rank loads partitioned, never whole on one
    device). The teacher must share the workflow's tokenizer `tok` and cover its vocabulary."""
    if not get_objective(variant.objective).reads_teacher_logits:
        return None, None  # SFT, or sequence-level KD: it learns from the teacher's outputs only
    if job.teacher_store:
        store = TeacherStore(job.teacher_store)
        if not serves(variant.objective, store.mode):
            raise ValueError(
                f"objective {variant.objective!r} needs the teacher's full distribution; a "
                f"{store.mode} teacher store ({job.teacher_store}) cannot serve it"
            )
        store.check(train_set, vocab_size)
        return None, store  # the examples carry their "index" (set in _train)
    if job.teacher_model is None:
        raise ValueError(f"objective {variant.objective!r} needs a teacher model")
    models.check_tokenizer(job.teacher_model, tok, job.teacher_key, None, job.trust_remote_code)
    teacher = models.load_teacher(
        job.teacher_model,
        job.teacher_dtype,
        job.trust_remote_code,
        vocab_size,
        key=job.teacher_key,
    )
    models.check_vocab(teacher, tok, job.teacher_model, job.teacher_key)
    if job.training.get("deepspeed"):
        return distributed.teacher_engine(teacher, args), None
    return teacher.to(args.device), None


def _log_start(job: TrainJob, examples: int, store: TeacherStore | None) -> None:
    deepspeed = job.training.get("deepspeed")
    teacher = f"store {job.teacher_store}" if store is not None else job.teacher_model
    if job.teacher_outputs:  # the sequences it trains on (sekd.teacher.outputs)
        teacher = f"{teacher or 'not loaded'}, teacher outputs {job.teacher_outputs}"
    log.info(
        "%s: %d training examples, base model %s, teacher %s, %d rank(s)%s%s",
        job.variant,
        examples,
        job.base_model,
        teacher,
        _world_size(),
        f", DeepSpeed {deepspeed}" if deepspeed else "",
        f", resuming from {job.resume_from_checkpoint}" if job.resume_from_checkpoint else "",
    )


def _summary(
    job: TrainJob,
    variant: Variant,
    trainer: DistillTrainer,
    timer: StepTimer,
    sources: dict,
    chosen: str = selection.DEFAULT,
) -> dict:
    """train_summary.json: the run, its steps, best checkpoint, log history, step times, and
    what was loaded (`models`: source, revision asked for, resolved commit or sha256; see
    sekd.models.provenance), the dtypes trained in (`precision`); for on-policy runs,
    `onpolicy`: the run's sampling totals (`DistillTrainer.onpolicy_totals`, of this process's
    steps; a collective under torchrun)."""
    state = trainer.state
    totals = trainer.onpolicy_totals()
    if timer.seconds:
        ordered = sorted(timer.seconds)
        log.info("median step time %.4f s over %d steps", ordered[len(ordered) // 2], len(ordered))
    return {
        "variant": job.variant,
        "objective": variant.objective,
        "seed": job.seed,
        "global_steps": state.global_step,
        "best_checkpoint": state.best_model_checkpoint,
        # the best metric of the evaluations: the loss (default) or, under
        # training.sft_selection: valid_bleu, the BLEU (best_eval_bleu)
        "best_eval_bleu" if chosen == "valid_bleu" else "best_eval_loss": state.best_metric,
        "log_history": state.log_history,
        "step_seconds": timer.seconds,  # of this process's steps (not those before a resume)
        "step_cpu_seconds": timer.cpu_seconds,
        "models": sources,
        "devices": _devices(),  # the compute budget of the report (sekd.report.budget)
        "precision": _precision(trainer),
        **({"onpolicy": totals} if totals is not None else {}),
        # the adapter's settings and parameters against the model's (sekd.train.lora)
        **({"lora": {**job.lora, **lora.parameter_counts(trainer.model)}} if job.lora else {}),
    }


def _precision(trainer: DistillTrainer) -> dict:
    """The dtypes the run trained in: the model's weights and the master weights its optimizer
    steps (under DeepSpeed ZeRO-3 the flat partitions of DeepSpeed's optimizer, float32 with
    bf16 weights; else the weights themselves). Each a dtype name, or names joined by commas."""
    optimizer, zero3 = trainer.optimizer, "fp32_partitioned_groups_flat"
    while hasattr(optimizer, "optimizer") and not hasattr(optimizer, zero3):
        optimizer = optimizer.optimizer  # accelerate's wrappers
    # ZeRO-3 hands its torch optimizer one partition at a time (its param_groups are empty
    # between steps) and keeps the partitions in fp32_partitioned_groups_flat
    masters = getattr(optimizer, zero3, None) or [
        p for group in getattr(optimizer, "param_groups", []) for p in group["params"]
    ]
    return {
        "weights": _dtype_names(trainer.model.parameters()),
        "master_weights": _dtype_names(masters) if masters else None,
    }


def _dtype_names(tensors) -> str:
    """The tensors' dtypes, e.g. "bfloat16" or "bfloat16,float32"."""
    return ",".join(sorted({str(t.dtype).removeprefix("torch.") for t in tensors}))


def _devices() -> dict:
    """The devices of the run: ranks, GPUs (one per rank on GPUs, else 0) and the GPU's name."""
    cuda = torch.cuda.is_available()
    return {
        "world_size": _world_size(),
        "gpus": _world_size() if cuda else 0,
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
    }


def _save(trainer: DistillTrainer, tok, job: TrainJob, summary: dict) -> None:
    """Write the model, tokenizer and summary to `job.out_dir` (through ``<out_dir>.tmp``, renamed
    when complete) and remove the run's checkpoints."""
    main_process = trainer.is_world_process_zero()
    # rank 0 alone prepares and renames the directory; every rank takes part in the save
    writing = (
        atomic.replacing(job.out_dir, directory=True)
        if main_process
        else contextlib.nullcontext(atomic.temporary(job.out_dir))
    )
    last = completed(Path(job.checkpoint_dir))
    kept = "Nothing of it was kept; free some space and rerun: it " + (
        f"resumes from {last[-1]}, kept," if last else "trains again (no checkpoint kept)"
    )
    kept += " and saves the model."
    with atomic.naming_full_disk(job.out_dir, note=kept), writing as tmp_dir:
        if job.lora:
            _save_lora(trainer, tok, job, tmp_dir)
        elif _world_size() == 1 and not job.training.get("deepspeed"):
            models.save(trainer.model, tok, tmp_dir)
        else:
            # Collective: under ZeRO-3 the ranks gather the full weights
            # (stage3_gather_16bit_weights_on_model_save) and rank 0 writes them.
            trainer.save_model(str(tmp_dir))
            barrier()
            if main_process:
                if not list(tmp_dir.glob("*.safetensors")):
                    raise RuntimeError(
                        f"{tmp_dir}: no full weights saved; set zero_optimization."
                        "stage3_gather_16bit_weights_on_model_save to true in the DeepSpeed config"
                    )
                tok.save_pretrained(tmp_dir)
                (tmp_dir / "training_args.bin").unlink(missing_ok=True)
        if main_process:
            (tmp_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    if main_process:
        shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
        log.info("saved %s after %d steps", job.out_dir, trainer.state.global_step)


def _save_lora(trainer: DistillTrainer, tok, job: TrainJob, tmp_dir: Path) -> None:
    """A LoRA run's output: the adapter (every rank takes part: under ZeRO-3 its partitions are
    gathered) in ``<tmp_dir>/adapter``, then, on rank 0, the base model with the adapter merged
    into its weights, in the dtype the run trained them in (sekd.train.lora.save_merged)."""
    adapter = tmp_dir / lora.ADAPTER_DIR
    dtype = _dtype_names(p for p in trainer.model.parameters() if not p.requires_grad)
    if _world_size() == 1 and not job.training.get("deepspeed"):
        trainer.model.save_pretrained(adapter, safe_serialization=True)
    else:
        trainer.save_model(str(adapter))
        barrier()
    if trainer.is_world_process_zero():
        (adapter / "training_args.bin").unlink(missing_ok=True)
        if not (adapter / "adapter_model.safetensors").is_file():
            raise RuntimeError(
                f"{adapter}: no adapter saved; set zero_optimization."
                "stage3_gather_16bit_weights_on_model_save to true in the DeepSpeed config"
            )
        lora.save_merged(tmp_dir, job.base_model, tok, dtype, job.trust_remote_code, job.revision)


def main(argv: list[str] | None = None) -> None:
    """A torchrun rank: ``python -m sekd.train.job job.json`` (written by `run`)."""
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if int(rank) == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s rank{rank} %(name)s: %(message)s",
    )
    # DeepSpeed 0.19.8 calls these torch 2.13 deprecated collectives on every step.
    warnings.filterwarnings(
        "ignore", r"`torch\.distributed\.(reduce_scatter|all_gather_into)_tensor` is deprecated"
    )
    (path,) = argv if argv is not None else sys.argv[1:]
    job = TrainJob(**json.loads(Path(path).read_text()))
    try:
        _train(job)
    except PreemptedError as stop:
        log.warning("%s", stop)
        sys.exit(EXIT_PREEMPTED)
    finally:
        # Close the process group before the interpreter exits: left to teardown, its
        # background threads can abort a rank ("terminate called without an active exception").
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if "LOCAL_RANK" in os.environ:
        _exit_complete_rank()


def _exit_complete_rank() -> None:
    """End a torchrun rank whose work is written without the interpreter's teardown.

    Even with the process group closed, a native destructor at teardown (DeepSpeed's shared-memory
    comm op or a thread pool) sometimes aborts a rank after it saved everything ("terminate called
    without an active exception", seen once on 2 CPU ranks under load), and torchrun then reports
    the finished job as failed. Every output is written and closed by now; only the streams are
    flushed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
