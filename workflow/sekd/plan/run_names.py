"""The run-name grammar of the teacher store and the training runtime keys (torch-free).

The rules import this module when the Snakefile is parsed: no torch or numpy import here.

A KD run trained from a teacher store is ``kd/<teacher>.<source>/<variant>``, source = ``full``
or ``sparse<K>`` (``sparse<K>t<τ>`` for τ ≠ 1; sekd.teacher.store); online runs keep
``kd/<teacher>/<variant>``.
"""

from __future__ import annotations

from sekd.plan.objectives import OBJECTIVES
from sekd.plan.variants import format_number

MODES = ("online", "full", "sparse")  # the config's teacher_store.mode
SOURCE_PATTERN = r"full|sparse[0-9]+(?:t[0-9]+(?:\.[0-9]+)?)?"

# `training` keys that change how a run executes, not what it computes: the rules leave them out of
# their params (changing them reruns nothing) and a resumed run may change save_steps.
RUNTIME_KEYS = ("deepspeed", "nproc_per_node", "save_steps", "report_to")


def drop_runtime_keys(job_slice: dict) -> dict:
    """A rule's config slice without RUNTIME_KEYS (its params: what decides a rerun)."""
    training = {k: v for k, v in job_slice["training"].items() if k not in RUNTIME_KEYS}
    return {**job_slice, "training": training}


# Settings that must not decide a rerun travel to the scripts as rule resources: Snakemake reruns
# a job when its params change (rerun triggers: mtime, params, input, software-env, code), never
# when its resources do. A resource is an int or a string, so an unset (None) setting travels as
# 0 or "" and comes back as None.


def as_resource(value: str | int | None, kind: type = int) -> str | int:
    """`value` as a rule resource: unset (None) becomes 0 (int) or "" (str)."""
    return kind() if value is None else value


def from_resources(resources, names: tuple[str, ...]) -> dict:
    """{name: the resource's value, None when unset (0 or "")} of a job's resources."""
    return {name: getattr(resources, name, None) or None for name in names}


def runtime_resources(training: dict, names: tuple[str, ...] = RUNTIME_KEYS) -> dict:
    """The config's `training` RUNTIME_KEYS (`names` of them) as a training rule's resources:
    report_to's list as one comma-separated string; unset as 0 or "" (`as_resource`)."""
    values = {
        "deepspeed": as_resource(training["deepspeed"], str),
        "nproc_per_node": as_resource(training["nproc_per_node"]),
        "save_steps": as_resource(training["save_steps"]),
        "report_to": ",".join(training["report_to"]),
    }
    return {name: values[name] for name in names}


def runtime_values(resources, names: tuple[str, ...] = RUNTIME_KEYS) -> dict:
    """`runtime_resources` read back from a job's resources: the config's values (None when
    unset; report_to a list, [] when unset)."""
    values = from_resources(resources, names)
    if "report_to" in values:
        values["report_to"] = values["report_to"].split(",") if values["report_to"] else []
    return values


def source_name(store: dict) -> str | None:
    """The run-name suffix of the config's `teacher_store` section: None for online."""
    mode = store["mode"]
    if mode == "online":
        return None
    if mode == "full":
        return "full"
    if mode == "sparse":
        tau = float(store["temperature"])
        return f"sparse{int(store['samples'])}" + ("" if tau == 1 else f"t{format_number(tau)}")
    raise ValueError(f"teacher_store.mode: {mode!r} is not one of {', '.join(MODES)}")


def split_teacher(segment: str) -> tuple[str, str | None]:
    """``teacher.sparse64`` -> ("teacher", "sparse64"); ``teacher`` -> ("teacher", None)."""
    model, _, source = segment.partition(".")
    return model, source or None


def serves(objective: str, mode: str) -> bool:
    """Whether a store of `mode` can stand in for the teacher of `objective`. A store holds the
    teacher's distributions on the gold sequences only: objectives that train on other
    sequences (sekd.plan.objectives.SEQUENCE_SOURCES), or read no teacher logits, keep the online
    teacher (and their run names no store suffix)."""
    if mode == "online":
        return True
    declaration = OBJECTIVES[objective]
    if declaration.sequences != "gold" or not declaration.reads_teacher_logits:
        return False
    return mode == "full" or not declaration.needs_full_teacher


def teacher_segment(teacher: str, objective: str, store: dict) -> str:
    """The teacher part of a KD run name for the config's `teacher_store` section."""
    source = source_name(store)
    if source is None or not serves(objective, store["mode"]):
        return teacher
    return f"{teacher}.{source}"
