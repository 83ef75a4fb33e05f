"""No GPU job without a GPU: a job that asked for GPUs stops before it loads a model when torch
cannot see them on its node, instead of falling back to the CPU and running until its time limit.

Every rule script that loads a model (sft, kd, teacher_store, store_fidelity_loss, teacher_outputs,
decode, fit, comet) calls `require_gpus` first, inside its `sekd.logs.logged` block, so that the
error lands in the job's log and fails the job. A job asks for GPUs through its resources (the
profile's `set-resources`, or `--set-resources rule:gpu=N`):

* ``gpu``: the job's GPUs (sbatch ``--gpus``), shared among its ``nodes`` (1 when absent);
* ``gpus_per_node``: GPUs on each node, ``N`` or ``type:N``;
* ``gres``: a generic resource string, ``gpu`` (one), ``gpu:N`` or ``gpu:type:N``, per node.

The GPUs one node must see are the largest of these per-node counts; a job with none of them, or
0 (the CPU miniature, profiles/local), is not checked. When CUDA is missing, or fewer devices are
visible than asked, `require_gpus` raises `GpuUnavailableError`, whose message names the rule, the
resources asked, what torch reports (its version, the CUDA version it was built for, None for a
CPU-only build, `torch.cuda.is_available()`, `torch.cuda.device_count()`, CUDA_VISIBLE_DEVICES)
and the likely cause.

Escape hatch, for test clusters whose GPUs are fake (a SLURM gres without a device): with
``SEKD_GPU_REQUIRED=skip`` in the job's environment the error becomes a warning in the job's log,
saying how many GPUs the job asked for and that it runs on the CPU (or on the devices it sees).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from sekd.errors import SekdError
from sekd.plan import allocation

log = logging.getLogger("sekd.gpu_required")

SKIP_VARIABLE = "SEKD_GPU_REQUIRED"  # set to SKIP_VALUE to turn the error into a warning
SKIP_VALUE = "skip"
GPU_RESOURCES = ("gpu", "gpus_per_node", "gres", "nodes")  # the resources read, in messages


class GpuUnavailableError(SekdError):
    """A job asked for GPUs that torch does not see on its node; the message names the rule, the
    resources asked, what torch reports and the likely cause."""


@dataclass(frozen=True)
class GpuRequest:
    """The GPUs a job asked for: `per_node`, what one node must see (0: none asked), and `asked`,
    the resources it was derived from as ``name=value`` (e.g. ``gpu=16, nodes=2``)."""

    per_node: int
    asked: str


@dataclass(frozen=True)
class TorchFacts:
    """What torch reports about CUDA on this node."""

    version: str  # torch.__version__
    cuda: str | None  # torch.version.cuda: None for a CPU-only (or ROCm) build
    hip: str | None  # torch.version.hip: a ROCm build's version
    available: bool  # torch.cuda.is_available()
    device_count: int  # torch.cuda.device_count()
    visible: str | None  # CUDA_VISIBLE_DEVICES (None: unset)
    said: tuple[str, ...] = ()  # warnings torch gave while looking for devices

    def describe(self) -> str:
        """One line: the facts as torch names them."""
        visible = "unset" if self.visible is None else repr(self.visible)
        build = f"torch.version.cuda={self.cuda}"
        if self.hip:
            build += f", torch.version.hip={self.hip}"
        line = (
            f"torch {self.version}, {build}, torch.cuda.is_available()={self.available}, "
            f"torch.cuda.device_count()={self.device_count}, CUDA_VISIBLE_DEVICES={visible}"
        )
        return line + "".join(f"; torch warned: {said}" for said in self.said)


def gpus_requested(resources: object) -> GpuRequest:
    """The GPUs one node of the job must see, from its `gpu`, `nodes`, `gpus_per_node` and `gres`
    resources (the module's docstring; sekd.plan.allocation.gpus_per_node); per_node 0 when it asked
    for none."""
    per_node = allocation.gpus_per_node(resources)
    asked = ", ".join(
        f"{name}={value}"
        for name in GPU_RESOURCES
        if (value := allocation.resource(resources, name)) not in (None, "", 0)
        and (name != "nodes" or per_node > 0)
    )
    return GpuRequest(per_node=per_node, asked=asked)


def torch_facts(env: Mapping[str, str] | None = None) -> TorchFacts:
    """What torch reports on this node (and CUDA_VISIBLE_DEVICES of `env`, os.environ if None)."""
    env = os.environ if env is None else env
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count())
    return TorchFacts(
        version=str(torch.__version__),
        cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        available=available,
        device_count=count if available else 0,
        visible=env.get("CUDA_VISIBLE_DEVICES"),
        said=tuple(dict.fromkeys(str(w.message).strip() for w in caught)),
    )


def driver_needed(cuda: str) -> str:
    """The NVIDIA driver a CUDA `cuda` (e.g. "12.8") build of torch needs, on Linux."""
    major, _, minor = cuda.partition(".")
    try:
        major_n, minor_n = int(major), int(minor.split(".")[0] or 0)
    except ValueError:
        return f"the driver the CUDA {cuda} release notes name"
    if major_n >= 13:
        return "driver >= 580"
    if major_n == 12 and minor_n >= 8:
        return "driver >= 570 (>= 525 under CUDA's minor-version compatibility, not on every GPU)"
    if major_n == 12:
        return "driver >= 525"
    if major_n == 11:
        return "driver >= 450"
    return f"the driver the CUDA {cuda} release notes name"


def likely_cause(request: GpuRequest, facts: TorchFacts) -> str:
    """Why torch does not see the GPUs asked for, and what to do, from what it reports."""
    if facts.cuda is None and not facts.hip:
        return (
            f"this torch ({facts.version}) is a CPU-only build: the job runs in an environment "
            "without the GPU build of torch (such as the CPU venv .venv); run the GPU jobs in the "
            "workflow's GPU environments, `--sdm conda` (workflow/envs/train.yaml and the other "
            "rule envs) or `--sdm apptainer` (the container)"
        )
    if facts.device_count == 0:
        visible = facts.visible
        if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
            return (
                f"no GPU is allocated to this job: CUDA_VISIBLE_DEVICES={visible!r} hides every "
                "device; check the job's allocation (`scontrol show job $SLURM_JOB_ID`, the "
                "profile's gpu/gres resources)"
            )
        if facts.hip:
            return (
                f"a ROCm {facts.hip} build of torch that finds no device: no GPU is allocated to "
                "this job, or the node's ROCm driver does not serve this build (`rocm-smi`)"
            )
        return (
            f"this torch is a CUDA {facts.cuda} build that finds no device: the node's NVIDIA "
            f"driver is older than the build needs (CUDA {facts.cuda} needs "
            f"{driver_needed(facts.cuda)}; CUDA 13 builds need driver >= 580, CUDA 12.x builds "
            ">= 525, >= 570 from 12.8; `nvidia-smi` shows the driver; the config switch "
            "`environment.cuda` selects the CUDA 12 variant of the envs), or no GPU is "
            "allocated to this job or present on this node (`nvidia-smi -L`, "
            "`scontrol show job $SLURM_JOB_ID`)"
        )
    return (
        f"torch sees {facts.device_count} of the {request.per_node} GPUs one node of this job "
        "needs: CUDA_VISIBLE_DEVICES hides the others, or the allocation gave fewer than asked "
        "(`scontrol show job $SLURM_JOB_ID`, `nvidia-smi -L`, the profile's gpu/gres resources)"
    )


def _skipped(env: Mapping[str, str]) -> bool:
    return env.get(SKIP_VARIABLE, "").strip().lower() == SKIP_VALUE


def _check(rule: str, request: GpuRequest, env: Mapping[str, str]) -> None:
    """Raise GpuUnavailableError (a warning under SEKD_GPU_REQUIRED=skip) unless torch sees
    `request.per_node` devices."""
    facts = torch_facts(env)
    if facts.available and facts.device_count >= request.per_node:
        log.info(
            "rule %s: asked for %s, torch sees %d GPU(s)", rule, request.asked, facts.device_count
        )
        return
    problem = (
        f"rule {rule} asked for {request.asked} (at least {request.per_node} GPU(s) on this "
        f"node) but torch sees {facts.device_count}: {facts.describe()}. Likely cause: "
        f"{likely_cause(request, facts)}"
    )
    if _skipped(env):
        where = "the CPU" if facts.device_count == 0 else f"the {facts.device_count} visible GPU(s)"
        log.warning(
            "%s=%s: rule %s asked for %d GPU(s) and runs on %s instead (for test clusters with "
            "fake GPUs only). %s",
            SKIP_VARIABLE,
            SKIP_VALUE,
            rule,
            request.per_node,
            where,
            problem,
        )
        return
    raise GpuUnavailableError(
        f"{problem}. (On a test cluster with fake GPUs, {SKIP_VARIABLE}={SKIP_VALUE} in the "
        "job's environment runs it anyway, with a warning.)"
    )


def require_gpus(rule: str, resources: object, env: Mapping[str, str] | None = None) -> int:
    """Check, before a job loads any model, that torch sees the GPUs the job asked for.

    `rule`: the rule's name (or a description of the job), for the message; `resources`: the job's
    resources (snakemake.resources, or a mapping); `env`: the environment (os.environ if None).
    Returns the GPUs one node asked for (0 when none: nothing is checked). Raises
    `GpuUnavailableError` when CUDA is unavailable or fewer devices are visible than asked,
    unless SEKD_GPU_REQUIRED=skip, which logs the problem as a warning and returns.
    """
    request = gpus_requested(resources)
    if request.per_node > 0:
        _check(rule, request, os.environ if env is None else env)
    return request.per_node


def refuse_cpu(what: str, gpus: int, env: Mapping[str, str] | None = None) -> None:
    """For code that would pick the CPU when CUDA is unavailable (sekd.train.job's Trainer
    arguments, in every torchrun rank): when the job asked for `gpus` (> 0, GPUs per node), raise
    `GpuUnavailableError` unless torch sees at least one device, the process's own; with
    SEKD_GPU_REQUIRED=skip, log a warning instead."""
    if gpus > 0:
        request = GpuRequest(per_node=1, asked=f"{gpus} GPU(s) per node")
        _check(what, request, os.environ if env is None else env)
