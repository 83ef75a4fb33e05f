"""SFT and KD training on the Hugging Face `Trainer` (§4.2).

* SFT (teachers and student): eq. 2 on the ParroT-formatted training set, keeping the checkpoint
  with the lowest loss on the WMT21 validation set.
* KD: the student starts from the same base model as the student's SFT (not from the SFT'd
  student), same data and hyper-parameters; the SFT'd teacher is frozen in eval mode and the loss
  is `sekd.losses.distill_loss` with the run's objective. The final checkpoint is kept.
The fraction of hard tokens per logging interval is logged as ``hard_fraction``.

Scale-out (docs/deepspeed.md): with ``training.deepspeed`` (a ZeRO-3 config) or more than one
process, `run` starts ``torchrun ... -m sekd.train job.json`` (sekd.distributed) and every rank
trains; the student is partitioned by the Trainer's DeepSpeed integration and the frozen teacher
by a second, inference-only DeepSpeed engine. Checkpoints (every ``training.save_steps``, and on
SIGUSR1/SIGTERM) let a rerun of a killed or requeued job resume from the last complete one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sekd import data, prompts
from sekd.variants import Variant, parse_variant

log = logging.getLogger("sekd.train")


@dataclass
class TrainJob:
    """Everything one training run reads; built by the rule from its own slice of the config."""

    variant: str  # "sft" or a KD run name (sekd.variants)
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
    teacher_store: str | None = None  # or a store of its outputs (sekd.teacher_store; KD only)
    teacher_dtype: str = "float32"
    threads: int = 1  # CPU threads (of a rank; `run` shares the node's among its ranks)
    gpus: int = 0  # GPUs of the whole job (the rule's `gpu` resource): ranks when nproc is unset
    resume_from_checkpoint: str | None = None  # set by `run`, read by the ranks


# `training` keys that change how a run executes, not what it computes: the rules leave them out of
# their params (changing them reruns nothing) and a resumed run may change save_steps.
RUNTIME_KEYS = ("deepspeed", "nproc_per_node", "save_steps")


def drop_runtime_keys(job_slice: dict) -> dict:
    """A rule's config slice without RUNTIME_KEYS (its params: what decides a rerun)."""
    training = {k: v for k, v in job_slice["training"].items() if k not in RUNTIME_KEYS}
    return {**job_slice, "training": training}


COMPLETE = "sekd_complete.json"  # written into a checkpoint once every rank has finished it
PREEMPTED = "preempted.json"  # written into checkpoint_dir when a signal stopped the run
JOB_KEY = "sekd_job.json"  # what the checkpoints in checkpoint_dir were trained with
EXIT_PREEMPTED = 75  # a rank's exit status after a signal-triggered checkpoint (EX_TEMPFAIL)


def encode_records(records: list[dict], tokenizer, languages: dict, max_length: int) -> list[dict]:
    """Tokenize {direction, source, target} records into masked examples (prompt labels = -100)."""
    from tqdm import tqdm

    examples, truncated, dropped = [], 0, 0
    for rec in tqdm(records, desc="tokenize", mininterval=5):
        prompt = prompts.build_prompt(rec["source"], rec["direction"], languages)
        ex = prompts.encode_example(tokenizer, prompt, rec["target"], max_length)
        if ex is None:
            dropped += 1
            continue
        truncated += bool(ex.pop("truncated", False))
        examples.append(ex)
    log.info(
        "%d examples (%d truncated to %d tokens, %d dropped: prompt too long)",
        len(examples),
        truncated,
        max_length,
        dropped,
    )
    return examples


class PadCollator:
    """Right-pad a batch of examples; labels are padded with -100. With a teacher store, the
    batch also gets the store's rows of its examples (`store_*` fields; examples carry their
    position in the training set as "index")."""

    def __init__(self, pad_id: int, store=None):
        self.pad_id = pad_id
        self.store = store

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(ex["input_ids"]) for ex in batch)

        def pad(key: str, value: int):
            return torch.tensor([ex[key] + [value] * (width - len(ex[key])) for ex in batch])

        out = {
            "input_ids": pad("input_ids", self.pad_id),
            "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", -100),
        }
        if self.store is not None:
            out.update(self.store.rows([ex["index"] for ex in batch]))
        return out


def _make_trainer_class():
    import torch
    from transformers import Trainer

    from sekd.losses import distill_loss, progressive_beta
    from sekd.teacher_store import teacher_inputs

    class DistillTrainer(Trainer):
        """`Trainer` whose loss is `distill_loss` (eq. 2 for SFT; eqs. 3-10 for KD). The teacher
        is a model run in every step, or its stored outputs arrive with the batch (`store_*`
        fields, sekd.teacher_store)."""

        def __init__(self, *args, variant: Variant, teacher=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.variant = variant
            self.teacher = teacher
            # The loss is a per-micro-batch token mean: Trainer averages it over accumulation.
            self.model_accepts_loss_kwargs = False
            self._hard_tokens = 0
            self._tokens = 0
            self._last_beta = None

        def current_loss_kwargs(self) -> dict:
            kwargs = self.variant.loss_kwargs()
            schedule = self.variant.beta_schedule
            if schedule is not None:  # Fig. 3: β linear from β_b to β_e over training
                step, total = self.state.global_step, self.state.max_steps
                kwargs["beta"] = progressive_beta(*schedule, step, total)
            return kwargs

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            stored = {k: inputs.pop(k) for k in list(inputs) if k.startswith("store_")}
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            loss_kwargs = self.current_loss_kwargs()
            self._last_beta = loss_kwargs.get("beta")
            teacher_logits = offset = None
            if stored:
                teacher_logits, offset = teacher_inputs(
                    stored, labels[:, 1:], outputs.logits.shape[-1], loss_kwargs.get("lam")
                )
            elif self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(
                        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                    ).logits[:, :-1]
            # Position t predicts token t+1.
            result = distill_loss(
                outputs.logits[:, :-1],
                teacher_logits,
                labels[:, 1:],
                self.variant.objective,
                difficulty_offset=offset,
                **loss_kwargs,
            )
            if model.training and result.hard_mask is not None:
                self._hard_tokens += int(result.hard_mask.sum())
                self._tokens += result.num_tokens
            return (result.loss, outputs) if return_outputs else result.loss

        def log(self, logs: dict, start_time=None) -> None:
            if self._tokens and "loss" in logs:
                logs["hard_fraction"] = round(self._hard_tokens / self._tokens, 4)
                self._hard_tokens = self._tokens = 0
            if self.variant.beta_schedule is not None and "loss" in logs:
                logs["beta"] = round(self._last_beta, 4)  # β of the last step's loss
            super().log(logs, start_time)

    return DistillTrainer


def _make_checkpoint_callback():
    from transformers import TrainerCallback

    from sekd.distributed import PreemptedError

    class CheckpointCallback(TrainerCallback):
        """Checkpoints every `save_steps` optimizer steps and when SIGUSR1/SIGTERM arrives.

        A signal only sets a flag; at the end of the step the ranks agree on it (all-reduce, so a
        signal that reached one rank stops all at the same step), save, mark the checkpoint
        complete and raise `PreemptedError`. A checkpoint is marked complete (COMPLETE) only once
        all ranks wrote their part; then older ones are removed (the best SFT one is kept).
        """

        def __init__(self, save_steps: int | None, checkpoint_dir: str):
            self.save_steps = save_steps
            self.root = Path(checkpoint_dir)
            self.signalled: int | None = None
            self.stopping = False
            self._previous: dict = {}

        def _on_signal(self, signum, frame):
            self.signalled = signum

        def install(self) -> None:
            for sig in (signal.SIGUSR1, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._on_signal)
                except ValueError:  # not the main thread: signals stay as they are
                    return

        def restore(self) -> None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous = {}

        def _any_rank_signalled(self, args) -> bool:
            import torch
            import torch.distributed as dist

            flag = self.signalled is not None
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                t = torch.tensor([float(flag)], device=args.device)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                flag = bool(t.item())
            return flag

        def on_step_end(self, args, state, control, **kwargs):
            if self.save_steps and state.global_step % self.save_steps == 0:
                control.should_save = True
            if self._any_rank_signalled(args):
                self.stopping = True
                control.should_save = True
                control.should_training_stop = True
            self._unmark(args, state, control)

        def on_epoch_end(self, args, state, control, **kwargs):
            self._unmark(args, state, control)

        def _unmark(self, args, state, control) -> None:
            # A second save at the same step (an epoch's end after a step's) rewrites the
            # checkpoint in place: it is incomplete again until on_save.
            if control.should_save and state.is_world_process_zero:
                checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                (checkpoint / COMPLETE).unlink(missing_ok=True)

        def on_save(self, args, state, control, **kwargs):
            _barrier()
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero:
                (checkpoint / COMPLETE).write_text(json.dumps({"step": state.global_step}))
                best = state.best_model_checkpoint
                for old in _checkpoints(self.root):
                    if old != checkpoint and (best is None or old.name != Path(best).name):
                        shutil.rmtree(old, ignore_errors=True)
                if self.stopping:
                    what = signal.Signals(self.signalled).name if self.signalled else "a signal"
                    (self.root / PREEMPTED).write_text(
                        f"{what}: checkpointed {checkpoint} at step {state.global_step} of "
                        f"{state.max_steps}; a rerun resumes from it"
                    )
            _barrier()
            if self.stopping:
                raise PreemptedError(f"checkpointed at step {state.global_step} on a signal")

    return CheckpointCallback


def _make_step_timer():
    import time

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall and process CPU time of every optimizer step (forward, teacher or store,
        backward, update)."""

        def __init__(self):
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self._start = self._cpu = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start, self._cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(round(time.perf_counter() - self._start, 6))
            self.cpu_seconds.append(round(time.process_time() - self._cpu, 6))

    return StepTimer()


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _checkpoints(root: Path) -> list[Path]:
    """checkpoint-N directories of `root`, by step."""
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def _job_key(job: TrainJob, world_size: int) -> dict:
    """What checkpoints depend on: all but threads, save_steps; the world size under DeepSpeed."""
    key = asdict(job)
    for name in ("threads", "gpus", "resume_from_checkpoint"):
        key.pop(name)
    key["training"] = {
        k: v for k, v in job.training.items() if k not in ("save_steps", "nproc_per_node")
    }
    key["world_size"] = world_size if job.training.get("deepspeed") else None
    return json.loads(json.dumps(key))


def prepare_checkpoints(job: TrainJob, world_size: int = 1) -> str | None:
    """Tidy `job.checkpoint_dir` before training; return the checkpoint to resume from, if any.

    Runs in one process before any rank starts: checkpoints without the COMPLETE mark (the run was
    killed while writing them) are removed, and so are all checkpoints when they were trained with
    a different job (another config, or another world size under DeepSpeed, whose ZeRO-3
    checkpoints are partitioned per rank).
    """
    root = Path(job.checkpoint_dir)
    key = _job_key(job, world_size)
    (root / PREEMPTED).unlink(missing_ok=True)
    checkpoints = _checkpoints(root)
    if checkpoints:
        try:
            same = json.loads((root / JOB_KEY).read_text()) == key
        except (OSError, ValueError):
            same = False
        if not same:
            log.warning("%s: checkpoints of another job; starting over", root)
        for checkpoint in checkpoints:
            if not same or not (checkpoint / COMPLETE).is_file():
                shutil.rmtree(checkpoint)
    root.mkdir(parents=True, exist_ok=True)
    (root / JOB_KEY).write_text(json.dumps(key, indent=1))
    complete = _checkpoints(root)
    if complete:
        log.info("resuming from %s", complete[-1])
        return str(complete[-1])
    return None


def run(job: TrainJob) -> dict:
    """Train one model and save it (safetensors) to `job.out_dir`; return the summary.

    One process without DeepSpeed trains here; otherwise torchrun starts the ranks
    (sekd.distributed.launch). Raises `sekd.distributed.PreemptedError` when a signal stopped the
    run after a checkpoint.
    """
    from sekd import distributed

    t = job.training
    nodes = distributed.slurm_nodes()
    nproc = distributed.processes_per_node(t.get("nproc_per_node"), job.gpus, nodes.count)
    deepspeed = t.get("deepspeed")
    if deepspeed:
        path = Path(deepspeed)
        if not path.is_file():
            raise FileNotFoundError(f"training.deepspeed: no DeepSpeed config at {path}")
        t = {**t, "deepspeed": str(path.resolve())}
    world_size = nproc * nodes.count
    job = replace(job, training=t)
    job = replace(job, resume_from_checkpoint=prepare_checkpoints(job, world_size))
    if world_size == 1 and not deepspeed:
        return _train(job)
    # CPU threads per rank: the node's CPUs (the SLURM allocation's, else the rule's threads) shared
    cpus = int(os.environ.get("SLURM_CPUS_ON_NODE") or job.threads)
    job = replace(job, threads=max(1, cpus // nproc))
    distributed.launch(
        job, nproc, Path(job.checkpoint_dir) / "job.json", Path(job.checkpoint_dir) / PREEMPTED
    )
    return json.loads((Path(job.out_dir) / "train_summary.json").read_text())


def _train(job: TrainJob) -> dict:
    """One rank's training (the only rank when not launched by torchrun)."""
    import torch
    from transformers import TrainingArguments, set_seed

    from sekd import models
    from sekd import tokenizer as tokenizers
    from sekd.logs import configure_torch_threads

    configure_torch_threads(job.threads)
    variant = Variant("sft") if job.variant == "sft" else parse_variant(job.variant)
    t = job.training
    deepspeed = t.get("deepspeed")
    is_sft = variant.objective == "sft"
    select_best = is_sft and t["select_best_sft"] and bool(job.valid_files)
    use_cuda = torch.cuda.is_available()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = t["per_device_batch_size"] * world_size
    if t["batch_size"] % per_step:
        raise ValueError(
            f"training.batch_size={t['batch_size']} is not a multiple of "
            f"per_device_batch_size x devices = {per_step}"
        )
    if deepspeed:
        from sekd.distributed import accelerate_cpu_shim

        accelerate_cpu_shim()
    interval = "steps" if t["eval_steps"] else "epoch"
    # Built before any from_pretrained: with a ZeRO-3 config this makes the weights load
    # partitioned across the ranks (HfDeepSpeedConfig).
    args = TrainingArguments(
        output_dir=job.checkpoint_dir,
        num_train_epochs=t["epochs"],
        per_device_train_batch_size=t["per_device_batch_size"],
        per_device_eval_batch_size=t["per_device_batch_size"],
        gradient_accumulation_steps=t["batch_size"] // per_step,
        learning_rate=t["learning_rate"],
        warmup_ratio=t["warmup_ratio"],
        lr_scheduler_type=t["lr_scheduler"],
        weight_decay=t["weight_decay"],
        logging_steps=t["logging_steps"],
        eval_strategy=interval if select_best else "no",
        eval_steps=t["eval_steps"],
        # Checkpoints for resuming come from CheckpointCallback (save_steps, signals); the
        # Trainer's own saves are the per-evaluation ones that select the best SFT checkpoint.
        save_strategy=interval if select_best else "no",
        save_steps=t["eval_steps"],
        save_total_limit=None,  # CheckpointCallback removes old ones once a new one is complete
        load_best_model_at_end=select_best,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_safetensors=True,
        save_only_model=False,  # optimizer, scheduler and RNG states too, to resume
        seed=job.seed,
        data_seed=job.seed,
        report_to=[],
        use_cpu=not use_cuda and not deepspeed,
        deepspeed=deepspeed or None,
        bf16=use_cuda and job.dtype == "bfloat16",
        fp16=use_cuda and job.dtype == "float16",
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=use_cuda,
        ddp_find_unused_parameters=False,  # (DDP without DeepSpeed) every parameter gets a gradient
        disable_tqdm=False,
    )
    set_seed(job.seed)
    tok = tokenizers.load(job.tokenizer_dir)
    records = [r for path in job.train_files for r in data.read_jsonl(path)]
    train_set = encode_records(records, tok, job.languages, t["max_length"])
    if not train_set:
        raise ValueError(
            f"no training example fits training.max_length={t['max_length']} tokens "
            "(the prompt alone is longer); raise training.max_length"
        )
    valid_set = None
    if select_best:
        valid = [r for path in job.valid_files for r in data.read_jsonl(path)]
        valid_set = encode_records(valid, tok, job.languages, t["max_length"])
    # Master weights in fp32; mixed precision (bf16 autocast) on GPUs, as DeepSpeed does.
    model = models.load_causal_lm(job.base_model, "float32", job.trust_remote_code)
    teacher = store = None
    if not is_sft and job.teacher_store:
        from sekd.teacher_store import TeacherStore, serves

        store = TeacherStore(job.teacher_store)
        if not serves(variant.objective, store.mode):
            raise ValueError(
                f"objective {variant.objective!r} needs the teacher's full distribution; a "
                f"{store.mode} teacher store ({job.teacher_store}) cannot serve it"
            )
        store.check(train_set, model.config.vocab_size)
        for index, example in enumerate(train_set):
            example["index"] = index
    elif not is_sft:
        if job.teacher_model is None:
            raise ValueError(f"objective {variant.objective!r} needs a teacher model")
        # Under ZeRO-3 every rank loads it (partitioned as it loads, never whole on one device).
        teacher = models.load_causal_lm(job.teacher_model, job.teacher_dtype, job.trust_remote_code)
        teacher.eval().requires_grad_(False)
        if teacher.config.vocab_size < model.config.vocab_size:
            raise ValueError("the teacher's vocabulary is smaller than the student's")
        if deepspeed:
            teacher = _teacher_engine(teacher, args)
        else:
            teacher.to(args.device)
    log.info(
        "%s: %d training examples, base model %s, teacher %s, %d rank(s)%s%s",
        job.variant,
        len(train_set),
        job.base_model,
        f"store {job.teacher_store}" if store is not None else job.teacher_model,
        world_size,
        f", DeepSpeed {deepspeed}" if deepspeed else "",
        f", resuming from {job.resume_from_checkpoint}" if job.resume_from_checkpoint else "",
    )
    checkpoints = _make_checkpoint_callback()(t.get("save_steps"), job.checkpoint_dir)
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=valid_set,
        data_collator=PadCollator(tok.pad_token_id, store),
        variant=variant,
        teacher=teacher,
        callbacks=[checkpoints, timer := _make_step_timer()],
    )
    checkpoints.install()
    try:
        trainer.train(resume_from_checkpoint=job.resume_from_checkpoint)
    finally:
        checkpoints.restore()
    summary = {
        "variant": job.variant,
        "objective": variant.objective,
        "seed": job.seed,
        "global_steps": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_eval_loss": trainer.state.best_metric,
        "log_history": trainer.state.log_history,
        "step_seconds": timer.seconds,  # of this process's steps (not those before a resume)
        "step_cpu_seconds": timer.cpu_seconds,
    }
    if timer.seconds:
        ordered = sorted(timer.seconds)
        log.info("median step time %.4f s over %d steps", ordered[len(ordered) // 2], len(ordered))
    tmp_dir = Path(job.out_dir + ".tmp")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp_dir, ignore_errors=True)
    if world_size == 1 and not deepspeed:
        models.save(trainer.model, tok, tmp_dir)
    else:
        # Collective: under ZeRO-3 the ranks gather the full weights
        # (stage3_gather_16bit_weights_on_model_save) and rank 0 writes them.
        trainer.save_model(str(tmp_dir))
        _barrier()
        if trainer.is_world_process_zero():
            if not list(tmp_dir.glob("*.safetensors")):
                raise RuntimeError(
                    f"{tmp_dir}: no full weights saved; set zero_optimization."
                    "stage3_gather_16bit_weights_on_model_save to true in the DeepSpeed config"
                )
            tok.save_pretrained(tmp_dir)
            (tmp_dir / "training_args.bin").unlink(missing_ok=True)
    if trainer.is_world_process_zero():
        (tmp_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(job.out_dir, ignore_errors=True)
        tmp_dir.rename(job.out_dir)
        shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
        log.info("saved %s after %d steps", job.out_dir, trainer.state.global_step)
    return summary


def _teacher_engine(teacher, args):
    """The frozen teacher as an inference-only DeepSpeed engine, partitioned like the student.

    As TRL's GKD trainer does: the Trainer's (processed) DeepSpeed config without optimizer and
    scheduler, with ZeRO-3's bucket sizes set for the teacher's hidden size.
    """
    import copy

    import deepspeed

    config = copy.deepcopy(args.hf_deepspeed_config.config)
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        hidden = getattr(teacher.config, "hidden_size", None) or max(
            getattr(teacher.config, "hidden_sizes", [1024])
        )
        zero["reduce_bucket_size"] = hidden * hidden
        zero["stage3_param_persistence_threshold"] = 10 * hidden
        zero["stage3_prefetch_bucket_size"] = int(0.9 * hidden * hidden)
    else:
        zero["stage"] = 0  # ZeRO-1/2 partition optimizer states only: a frozen model has none
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine


def main(argv: list[str] | None = None) -> None:
    """A torchrun rank: ``python -m sekd.train job.json`` (written by `run`)."""
    from sekd.distributed import PreemptedError

    logging.basicConfig(
        level=logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s rank" + os.environ.get("RANK", "0") + " %(name)s: "
        "%(message)s",
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


if __name__ == "__main__":
    main()
