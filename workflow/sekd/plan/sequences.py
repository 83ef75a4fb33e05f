"""Where a KD run's training sequences come from, as paths and job settings (torch-free).

An objective declares its source (`sekd.plan.objectives.SEQUENCE_SOURCES`). The teacher's outputs
are generated once per teacher, generation setting and seed by the rule ``teacher_outputs`` into
``results/teacher_outputs/<teacher>/<generation>/seed<seed>``, and read by every run whose
objective trains on them with that setting: seq_kd and seq_inter share ``beam5``; fd_kl, fd_js
and fd_tvd share ``sample-t1-k0-p1``. The setting is also in the run names (``seq_kd-beam5``,
``fd_kl-ttemp1-ttopk0-ttopp1``), so changing it reruns only the runs (and the generation) that
read it. The segment is an identifier: the job's values come from the plan
(`sekd.plan.study.planned_generation`), never from the segment.
"""

from __future__ import annotations

from sekd.plan.objectives import OBJECTIVES, TEACHER_BEAM, TEACHER_SAMPLING
from sekd.plan.variants import Variant, format_number

GENERATION_PATTERN = r"beam[0-9]+|sample-t[0-9.]+-k[0-9]+-p[0-9.]+"


def generation_name(setting: dict) -> str:
    """The path segment of a teacher generation setting (`Variant.teacher_generation`):
    ``beam5``, or ``sample-t1-k0-p0.9`` (temperature, top-k, top-p)."""
    if set(setting) == set(TEACHER_BEAM):
        return f"beam{int(setting['num_beams'])}"
    if set(setting) == set(TEACHER_SAMPLING):
        return (
            f"sample-t{format_number(setting['teacher_temperature'])}"
            f"-k{int(setting['teacher_top_k'])}-p{format_number(setting['teacher_top_p'])}"
        )
    raise ValueError(f"not a teacher generation setting: {setting!r}")


def generation_job(setting: dict) -> dict:
    """The teacher_outputs job's generation keywords of a setting (`Variant.teacher_generation`,
    from the plan: `sekd.plan.study.planned_generation`): {"num_beams": K}, or {"temperature",
    "top_k", "top_p"} (the hyper-parameters' names without the ``teacher_`` prefix)."""
    generation_name(setting)  # a ValueError for what is not a generation setting
    return {key.removeprefix("teacher_"): value for key, value in setting.items()}


def teacher_outputs_dir(teacher: str, variant: Variant, seed: int | str) -> str | None:
    """The teacher outputs a KD run reads (None if its objective trains on no teacher output)."""
    if not OBJECTIVES[variant.objective].teacher_sequences:
        return None
    generation = generation_name(variant.teacher_generation)
    return f"results/teacher_outputs/{teacher}/{generation}/seed{seed}"
