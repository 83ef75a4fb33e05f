"""What each model-loading job asks the cluster for, from the sizing model (torch-free).

The SLURM profile describes the cluster in its `default-resources` (`gpu_mem_gb`,
`gpus_per_node`, `gpu_tflops`, `gpu_bandwidth_gbs`, `node_mem_gb`, `max_runtime`, `max_nodes`);
`Cluster.from_resources` reads them at plan time. Every job that loads a model (`MODEL_RULES`)
then gets, per job, from its estimate (sekd.plan.sizing):

- **GPUs**: the smallest count that holds its peak memory per GPU under `HEADROOM` of a GPU's
  memory and finishes within `max_runtime` (1, 2, 4, ... up to a node, then whole nodes);
- **placement**: training per node, as SLURM allocates it (`nodes`, `gres: gpu:<per node>`,
  since sbatch counts `--gres` per node, and one task per GPU, `tasks_per_node`); every other
  model-loading job on one GPU (`gpu: 1`);
- **host memory** per node (`mem_mb`) from the bytes the job loads through host memory;
- **wall time** (`runtime`, minutes) from its FLOPs or generated tokens, with a safety factor.

Without `gpu_mem_gb` (profiles/local, CI, the miniature) no job is sized and none asks for GPUs.
`tools/sbatch_lines.py` prints the sbatch line of one job of each rule (docs/slurm.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sekd.plan import study
from sekd.plan.objectives import OBJECTIVES
from sekd.plan.run_names import split_teacher
from sekd.plan.sizing import (
    GIB,
    TEST_SENTENCES,
    Arch,
    Estimate,
    SizingError,
    inference_estimate,
    model_arch,
    train_examples,
    training_estimate,
)

# Rules whose jobs load a model (and so run on GPUs when the profile describes them).
TRAINING_RULES = ("sft", "kd")
MODEL_RULES = (
    *TRAINING_RULES,
    "teacher_store",
    "store_fidelity_loss",
    "teacher_outputs",
    "decode",
    "fit",
    "comet",
)
# Share of a GPU's memory the estimate may fill: the rest is the CUDA context, NCCL buffers and
# allocator fragmentation, which the estimate does not count (PyTorch reserves ~0.5-1 GiB per
# context; fragmentation under ZeRO-3 is commonly 5-10%).
HEADROOM = 0.85
# Wall time = SAFETY x the compute estimate + STARTUP, rounded up to RUNTIME_STEP minutes: the
# estimate assumes sekd.plan.sizing.MFU throughout; loading, evaluation, checkpoints and the queue's
# node start are in STARTUP.
SAFETY = 2.0
STARTUP_MIN = 30
RUNTIME_STEP = 30
# On-policy objectives sample from the student every step (autoregressive, memory-bound): their
# steps cost about this much more than off-policy ones (bench/onpolicy_bench.py measured 2.19x at
# 1/8 scale on CPU; generation on a GPU is slower relative to training, hence 3).
ONPOLICY_FACTOR = 3.0
# COMET-22 (wmt22-comet-da): XLM-R large (560M parameters, Conneau et al. 2020) plus its
# estimator, scored in fp32.
COMET_PARAMS = 580_000_000


@dataclass(frozen=True)
class Cluster:
    """The GPU nodes a profile describes (its default-resources)."""

    gpu_mem_gb: float  # memory of one GPU, GB (1e9 bytes, as vendors state it)
    gpus_per_node: int = 8
    gpu_tflops: float | None = None  # peak dense bf16 TFLOP/s of one GPU (GPU-hours estimate)
    gpu_bandwidth_gbs: float = 2000.0  # GPU memory bandwidth, GB/s (generation is bound by it)
    node_mem_gb: float | None = None  # host memory of one node, GB: the plan checks jobs fit
    max_runtime: int = 2880  # minutes: the longest wall time the partition allows
    max_nodes: int = 4  # the most nodes one job may span
    # host memory of one process beside the weights it loads (CUDA context, NCCL, data loader,
    # Python), MB: a round figure above what a rank of the paper's models holds
    process_mem_mb: int = 8000

    @classmethod
    def from_resources(cls, resources: Mapping) -> Cluster | None:
        """The cluster of a profile's default-resources; None without `gpu_mem_gb`."""
        values = {k: resources[k] for k in cls.__dataclass_fields__ if resources.get(k)}
        if "gpu_mem_gb" not in values:
            return None
        kinds = {"gpus_per_node": int, "max_runtime": int, "max_nodes": int, "process_mem_mb": int}
        return cls(**{k: kinds.get(k, float)(v) for k, v in values.items()})

    def capacity(self) -> float:
        """Bytes of one GPU an estimate may fill."""
        return HEADROOM * self.gpu_mem_gb * 1e9

    def gpu_counts(self) -> list[int]:
        """Candidate GPU counts: powers of two up to a node, then whole nodes."""
        counts = [
            1 << i for i in range(self.gpus_per_node.bit_length()) if 1 << i <= self.gpus_per_node
        ]
        if counts[-1] != self.gpus_per_node:
            counts.append(self.gpus_per_node)
        return counts + [n * self.gpus_per_node for n in range(2, self.max_nodes + 1)]


def constant_resources(resources) -> dict:
    """{name: value} of the constant entries of Snakemake's default resources (a
    snakemake.resources.Resources of Resource objects, a plain mapping, or None); entries
    computed per job (mem_mb, tmpdir as functions) are left out."""
    constants = {}
    for name, value in (resources or {}).items():
        if hasattr(value, "is_evaluable"):  # a snakemake.resources.Resource
            if value.is_evaluable():
                continue
            value = value.value
        if not callable(value):
            constants[name] = value
    return constants


def resource(resources: object, name: str) -> object:
    """A resource's value, from Snakemake's resources object (attributes) or a mapping."""
    if isinstance(resources, Mapping):
        return resources.get(name)
    return getattr(resources, name, None)


def _count(name: str, value: object) -> int:
    """A GPU count: an int, ``"N"`` or ``"type:N"``; 0 for None or ""."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"resource {name}={value!r}: expected a number of GPUs")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"(?:[^:,\s]+:)?(\d+)", str(value).strip())
    if not match:
        raise ValueError(f"resource {name}={value!r}: expected a number of GPUs, N or type:N")
    return int(match[1])


def _gres_gpus(gres: object) -> int:
    """GPUs per node in a gres string: ``gpu`` (1), ``gpu:N``, ``gpu:type:N``; other generic
    resources in a comma-separated list are ignored."""
    total = 0
    for item in str(gres or "").split(","):
        parts = item.strip().removeprefix("gres/").split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        total += int(count) if count.isdigit() else 1  # gpu:type alone is one GPU
    return total


def gpus_per_node(resources: object) -> int:
    """GPUs one node of a job asked for (0: none), the largest of: `gres` gpu, gpu:N or
    gpu:<type>:N (sbatch counts --gres per node); `gpus_per_node` (N or type:N); `gpu` (the
    job's total, sbatch --gpus) over its `nodes`."""
    gpu = _count("gpu", resource(resources, "gpu"))
    nodes = max(1, _count("nodes", resource(resources, "nodes")))
    from_gpu = max(1, gpu // nodes) if gpu > 0 else 0
    per_node = _count("gpus_per_node", resource(resources, "gpus_per_node"))
    return max(from_gpu, per_node, _gres_gpus(resource(resources, "gres")))


def request_keys(rule: str) -> tuple[str, ...]:
    """The resources a sized job of `rule` carries (Request.resources)."""
    if rule in TRAINING_RULES:
        return ("nodes", "gres", "tasks_per_node", "mem_mb", "runtime")
    return ("nodes", "gpu", "mem_mb", "runtime")


@dataclass(frozen=True)
class Request:
    """One job's request: GPUs per node, nodes, host memory per node (MB), wall time (min)."""

    rule: str
    label: str
    gpus_per_node: int
    nodes: int
    mem_mb: int
    runtime: int
    estimate: Estimate

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    def resources(self) -> dict:
        """The Snakemake resources the SLURM plugin turns into sbatch options (request_keys).

        Training (sft, kd): --nodes, --gres=gpu:<per node> (sbatch counts --gres per node, so
        the split over nodes is asked, not assumed), --ntasks-per-node (the ranks run from the
        batch step, `mpi`; the plugin refuses an mpi job of one task, so a one-GPU job asks for
        two tasks, of which the launcher starts one), --mem per node, -t. One-GPU jobs:
        --gpus=1 (which the jobstep plugin's srun asks for again), --mem, -t."""
        values = {"nodes": self.nodes, "mem_mb": self.mem_mb, "runtime": self.runtime}
        if self.rule in TRAINING_RULES:
            values["gres"] = f"gpu:{self.gpus_per_node}"
            values["tasks_per_node"] = max(2, self.gpus_per_node)
        else:
            values["gpu"] = self.gpus
        return {key: values[key] for key in request_keys(self.rule)}

    def line(self) -> str:
        """The plan's one-line account of the request."""
        where = f"{self.nodes} node(s) x " if self.nodes > 1 else ""
        return (
            f"{self.rule} {self.label}: {self.estimate.describe()} on {where}"
            f"{self.gpus_per_node} GPU(s); host {self.mem_mb / 1000:,.0f} GB per node, "
            f"{self.runtime} min, ~{self.estimate.gpu_hours:,.1f} GPU hours"
        )


def runtime_minutes(compute_hours: float) -> int:
    """Wall minutes of a job whose compute estimate is `compute_hours` (wall, on its GPUs)."""
    minutes = round(SAFETY * compute_hours * 60 + STARTUP_MIN, 3)  # no step for a rounding error
    return int(math.ceil(minutes / RUNTIME_STEP) * RUNTIME_STEP)


def host_mem_mb(load_bytes: int, processes: int, cluster: Cluster, rule: str, label: str) -> int:
    """Host memory of one node: each process may hold a whole checkpoint of every model it loads
    in host memory while loading (transformers reads the state dict on every rank before ZeRO-3
    partitions it), plus the cluster's process_mem_mb. Raises SizingError above the node's
    memory."""
    need = processes * (load_bytes + cluster.process_mem_mb * 1e6)
    mb = int(math.ceil(need / 1e6 / 1000) * 1000)
    if cluster.node_mem_gb and mb > cluster.node_mem_gb * 1000:
        raise SizingError(
            f"rule {rule}, model {label}: needs {mb / 1000:,.0f} GB of host memory per node "
            f"({processes} process(es) loading {load_bytes / 1e9:,.1f} GB each), more than "
            f"node_mem_gb {cluster.node_mem_gb:g} in the profile's default-resources"
        )
    return mb


def training_request(
    rule: str,
    label: str,
    estimate_for: Callable[[int], Estimate],
    load_bytes: int,
    cluster: Cluster,
    onpolicy: bool = False,
) -> Request:
    """The smallest GPU count whose estimate (`estimate_for(gpus)`,
    sekd.plan.sizing.training_estimate) fits a GPU and whose wall time fits `max_runtime`;
    SizingError naming rule, model and the largest count tried when none does."""
    factor = ONPOLICY_FACTOR if onpolicy else 1.0
    tried = None
    for gpus in cluster.gpu_counts():
        estimate = estimate_for(gpus)
        runtime = runtime_minutes(factor * estimate.gpu_hours / gpus)
        tried = (gpus, estimate, runtime)
        if estimate.total() <= cluster.capacity() and runtime <= cluster.max_runtime:
            per_node = min(gpus, cluster.gpus_per_node)
            nodes = gpus // per_node
            mem = host_mem_mb(load_bytes, per_node, cluster, rule, label)
            return Request(rule, label, per_node, nodes, mem, runtime, estimate)
    gpus, estimate, runtime = tried
    raise SizingError(
        f"rule {rule}, model {label}: no GPU count up to {gpus} fits: on {gpus} GPU(s) it needs "
        f"{estimate.total() / GIB:.1f} GiB per GPU ({HEADROOM:.0%} of a {cluster.gpu_mem_gb:g} "
        f"GB GPU is {cluster.capacity() / GIB:.1f} GiB) and ~{runtime} min (max_runtime "
        f"{cluster.max_runtime}); raise max_nodes or max_runtime in the profile's "
        "default-resources, or shorten training"
    )


def inference_request(
    rule: str, label: str, estimate: Estimate, load_bytes: int, cluster: Cluster,
    generated_steps: int = 0, weight_bytes: int = 0,
) -> Request:  # fmt: skip
    """One GPU: the estimate must fit its whole memory (SizingError otherwise; no HEADROOM: an
    inference estimate is an upper bound already, its KV cache at full length for every
    sequence, and nothing is partitioned or gathered). Wall time from the FLOPs
    estimate plus, for generation, `generated_steps` decoding steps each reading the weights once
    at the GPU's memory bandwidth."""
    if estimate.total() > cluster.gpu_mem_gb * 1e9:
        raise SizingError(
            f"rule {rule}, model {label}: needs {estimate.total() / GIB:.1f} GiB on one GPU, more "
            f"than a {cluster.gpu_mem_gb:g} GB GPU holds ({estimate.describe()}); this rule "
            "runs on one GPU: use GPUs with more memory or a smaller batch"
        )
    generation_hours = generated_steps * weight_bytes / (cluster.gpu_bandwidth_gbs * 1e9) / 3600
    runtime = runtime_minutes(estimate.gpu_hours + generation_hours)
    if runtime > cluster.max_runtime:
        raise SizingError(
            f"rule {rule}, model {label}: needs ~{runtime} min on one GPU, more than max_runtime "
            f"{cluster.max_runtime} in the profile's default-resources; raise it if the "
            "partition allows, or use faster GPUs (gpu_tflops, gpu_bandwidth_gbs)"
        )
    mem = host_mem_mb(load_bytes, 1, cluster, rule, label)
    return Request(rule, label, 1, 1, mem, runtime, estimate)


def checkpoint_bytes(arch: Arch, dtype: str) -> int:
    """Bytes of a model's weights in `dtype` (a checkpoint as it is loaded)."""
    return arch.params() * (4 if dtype == "float32" else 2)


# --- The plan's side: a job of the study (config + rule + wildcards) -> its Request.


def _arch(config: dict, name: str) -> Arch:
    """Config model `name`'s architecture; SizingError when unknown (a GPU job that cannot be
    sized would be sent with the profile's defaults: no GPU, 4 GB)."""
    train = config["tokenizer"]["train"]
    arch, why = model_arch(config["models"][name], train["vocab_size"] if train else None)
    if arch is None:
        raise SizingError(
            f"models.{name}: {why}; the plan sizes every GPU job from the model's architecture: "
            f"point models.{name}.pretrained at a local directory holding its config.json, or "
            "add the hub id to sekd.plan.sizing.KNOWN_ARCHS"
        )
    return arch


def _bytes(config: dict, name: str) -> int:
    return checkpoint_bytes(_arch(config, name), config["models"][name]["dtype"])


def _train_tokens(config: dict) -> int:
    """Tokens of one epoch at max_length each (an upper bound); 0 for pairs of unknown size."""
    data = config["data"]
    examples = train_examples(data["pairs"], data["max_train_pairs"]) or 0
    return examples * config["training"]["max_length"]


def _training(config: dict, cluster: Cluster, rule: str, wc) -> Request:
    training = config["training"]
    batch, length = training["per_device_batch_size"], training["max_length"]
    name = wc.model if rule == "sft" else "student"
    online, onpolicy, finetune = None, False, training["finetune"]
    if rule == "kd":
        teacher, source = split_teacher(wc.teacher)
        variant = study.planned_variant(config, wc.variant)
        objective = OBJECTIVES[variant.objective]
        online = teacher if source is None and objective.reads_teacher_logits else None
        onpolicy = objective.student_sequences
        finetune = variant.option("finetune")
    arch = _arch(config, name)
    adapter = _lora_params(config, name, arch) if finetune == "lora" else 0
    teacher_arch = _arch(config, online) if online else None
    tokens = _train_tokens(config) * training["epochs"]
    peak = cluster.gpu_tflops
    load = _bytes(config, name) + (_bytes(config, online) if online else 0)
    parts = [f"online teacher {online}"] * bool(online) + ["on-policy"] * onpolicy
    parts += [f"LoRA r={config['models'][name]['lora']['rank']}"] * bool(adapter)
    label = f"{name} ({', '.join(parts)})" if parts else name
    return training_request(
        rule,
        label,
        lambda gpus: training_estimate(
            arch, gpus, batch, length, tokens, teacher_arch, peak, lora_params=adapter
        ),
        load,
        cluster,
        onpolicy,
    )


def _lora_params(config: dict, name: str, arch: Arch) -> int:
    """The parameters of models.<name>.lora's adapter on `arch`; SizingError naming the key when
    a target module is not one the sizing model knows."""
    lora = config["models"][name]["lora"]
    try:
        return arch.lora_params(lora["rank"], lora["target_modules"])
    except ValueError as error:
        raise SizingError(f"models.{name}.lora.target_modules: {error}") from None


def _forward_only(estimate: Estimate, config: dict, second: str | None, dtype: str) -> Estimate:
    """A forward-pass job's estimate (no KV cache: its passes run with use_cache=False), plus
    a `second` model's weights in `dtype` on the same GPU (fit, store fidelity)."""
    extra = checkpoint_bytes(_arch(config, second), dtype) if second else 0
    return replace(estimate, kv_cache=0, teacher=extra)


def _inference(config: dict, cluster: Cluster, rule: str, wc) -> Request:
    training, peak = config["training"], cluster.gpu_tflops
    length, steps, second, second_dtype = training["max_length"], 0, None, "bfloat16"
    examples = _train_tokens(config) // max(1, length)
    if rule == "teacher_store":  # every position's logits of the whole training set
        name, batch, positions = wc.teacher, config["teacher_store"]["batch_size"], None
        tokens = _train_tokens(config)
    elif rule == "store_fidelity_loss":  # teacher and student (fp32) on a few examples
        name, batch, positions = wc.teacher, training["per_device_batch_size"], None
        tokens = config["teacher_store"]["fidelity"]["examples"] * length
        second, second_dtype = "student", "float32"
    elif rule == "fit":  # validation NLL and KL: the run's model and its reference teacher
        name, batch, positions = wc.reference, training["per_device_batch_size"], None
        directions = len(config["data"]["valid_directions"])
        tokens = directions * TEST_SENTENCES * length
        model = _run_model(wc.run)
        if (
            wc.run != f"sft/{wc.reference}"
        ):  # else the model is its own reference (sekd.evaluate.validation_fit)
            second, second_dtype = model, config["models"][model]["dtype"]
    elif rule == "teacher_outputs":  # beam search or sampling over the training prompts
        name, sequences = wc.model, config["sequences"]
        beams = study.planned_generation(config, wc.generation).get("num_beams", 1)
        batch, positions = sequences["batch_size"] * beams, 1
        length = length + sequences["max_new_tokens"]
        tokens = examples * beams * length
        steps = math.ceil(examples / sequences["batch_size"]) * sequences["max_new_tokens"]
    else:  # decode one test direction; prompts assumed no longer than max_new_tokens
        name, decoding = _run_model(wc.run), config["decoding"]
        batch, positions = decoding["batch_size"] * decoding["num_beams"], 1
        length = 2 * decoding["max_new_tokens"]
        tokens = TEST_SENTENCES * decoding["num_beams"] * length
        steps = math.ceil(TEST_SENTENCES / decoding["batch_size"]) * decoding["max_new_tokens"]
    estimate = inference_estimate(_arch(config, name), batch, length, tokens, peak, positions)
    load = _bytes(config, name)
    if positions is None:
        estimate = _forward_only(estimate, config, second, second_dtype)
        load += estimate.teacher
    label = f"{name} (with {second})" if second else name
    return inference_request(rule, label, estimate, load, cluster, steps, _bytes(config, name))


def _run_model(run: str) -> str:
    """The config model a run trains: sft/<model> -> model, kd/... -> student."""
    kind, name = run.split("/")[:2]
    return name if kind == "sft" else "student"


def _comet(config: dict, cluster: Cluster) -> Request:
    weights = 4 * COMET_PARAMS
    estimate = Estimate(weights=weights)
    return inference_request("comet", config["scoring"]["comet_model"], estimate, weights, cluster)


def plan_request(config: dict, cluster: Cluster, rule: str, wildcards) -> Request:
    """The Request of one job of the plan: `rule` (one of MODEL_RULES) with its `wildcards`."""
    if rule in TRAINING_RULES:
        return _training(config, cluster, rule, wildcards)
    if rule == "comet":
        return _comet(config, cluster)
    if rule not in MODEL_RULES:
        raise ValueError(f"rule {rule} loads no model: not sized")
    return _inference(config, cluster, rule, wildcards)


class Sizer:
    """The resources of every model-loading job of one plan, for the rules' `resources:`.

    `cluster` None (no `gpu_mem_gb`: profiles/local, CI, the miniature): each rule keeps its CPU
    defaults. Otherwise each job's Request is computed once, the first job of each rule and
    model `announce`s its line ("GPU sizing: ..."), and a job that cannot fit raises `error`
    (Snakemake's WorkflowError in the rules) with SizingError's message."""

    def __init__(
        self,
        config: dict,
        cluster: Cluster | None,
        announce: Callable[[str], None] | None = None,
        error: type[Exception] = SizingError,
    ) -> None:
        self.config, self.cluster, self.announce, self.error = config, cluster, announce, error
        self._requests: dict[tuple, Request] = {}

    def request(self, rule: str, wildcards: Mapping) -> Request:
        """The Request of one job (computed once; its line announced once per rule and model)."""
        key = (rule, tuple(sorted(dict(wildcards).items())))
        if key not in self._requests:
            try:
                request = plan_request(self.config, self.cluster, rule, wildcards)
            except SizingError as error:
                raise self.error(str(error)) from None
            seen = {(r.rule, r.label) for r in self._requests.values()}
            if self.announce and (request.rule, request.label) not in seen:
                self.announce(f"GPU sizing: {request.line()}")
            self._requests[key] = request
        return self._requests[key]

    def resources(self, rule: str, **cpu: object) -> dict:
        """A model-loading rule's resources: on a described GPU cluster, per job from its
        Request (nodes, gres, mem_mb, runtime; tasks_per_node for training); else `cpu`."""
        if self.cluster is None:
            return cpu
        return {
            key: lambda wc, key=key: self.request(rule, wc).resources()[key]
            for key in request_keys(rule)
        }
