"""What each job computes from: its params, the slice of the config it reads (torch-free).

A rule's params decide its reruns (Snakemake records them), so each job gets only the keys it
reads and unrelated edits rerun nothing. The open choices of issue 11 that act on SFT and data
(prompt.response_newline, training.truncation, training.sft_selection) enter a job's params only
when not their schema default, so the jobs of the paper's config keep the params they had before
the keys existed; the code that reads them takes the default from the schema (`sekd.plan.schema.
default`), never from a literal of its own.

`Jobs(config)` answers for one validated config; the rules call it with their wildcards.
"""

from __future__ import annotations

import os
from typing import Any

from sekd.plan import study
from sekd.plan.objectives import FDISTILL, OBJECTIVES
from sekd.plan.run_names import drop_runtime_keys, serves, source_name, split_teacher
from sekd.plan.schema import default
from sekd.plan.variants import Variant

# The conda env (relative to the rules) of the jobs that generate with `<section>.engine`.
ENGINE_ENVS = {"hf": "../envs/train.yaml", "vllm": "../envs/vllm.yaml"}
# environment.cuda picks the CUDA generation of the train and vLLM envs (docs/environments.md).
CUDA_ENVS = {
    "13": {},
    "12": {"train": "train-cu12", "vllm": "vllm-cu12"},
}


def pinned(key: str, revision: str | None) -> dict:
    """{key: revision} when a revision is set, else {} (params: an unpinned plan's params stay
    as they were, so adding the revision keys reruns nothing)."""
    return {key: revision} if revision else {}


def model_dir(run: str, seed: int | str) -> str:
    return f"results/models/{run}/seed{seed}"


class Jobs:
    """The params of every job of one validated `config`. A job the plan does not have (a run,
    store or generation setting no table, figure or report asks for) raises `error` (Snakemake's
    WorkflowError in the rules) with a message naming it."""

    def __init__(self, config: dict, error: type[Exception] = ValueError) -> None:
        self.config, self.error = config, error

    # --- shared pieces ---------------------------------------------------------------------

    def languages_for(self, directions: list[str]) -> dict[str, str]:
        """The `languages` entries a job needs: only the codes in `directions`."""
        codes = {code for d in directions for code in d.split("-")}
        return {code: self.config["languages"][code] for code in sorted(codes)}

    def train_directions(self) -> list[str]:
        pairs = self.config["data"]["pairs"]
        return [d for pair in pairs for d in (pair, "-".join(pair.split("-")[::-1]))]

    def not_default(self, section: str, key: str) -> dict:
        """{key: value} of config key <section>.<key> when it is not its schema default, else {}."""
        value = self.config[section][key]
        return {} if value == default(f"{section}.{key}") else {key: value}

    def formatting(self) -> dict:
        """How prompts and examples are encoded (prompt.response_newline, training.truncation),
        each only when not the default: the teacher_outputs and teacher_store params."""
        return {
            **self.not_default("prompt", "response_newline"),
            **self.not_default("training", "truncation"),
        }

    def base_model(self, name: str) -> str:
        """A model's starting weights: a built tiny model's directory (its pretrained one when it
        sets init.pretrain_steps), or a hub id / local path."""
        model = self.config["models"][name]
        if not model["init"]:
            return model["pretrained"]
        stage = "pretrained" if model["init"]["pretrain_steps"] else "base"
        return f"results/models/{stage}/{name}"

    # --- the miniature's models: built, then pretrained ------------------------------------

    def init(self, name: str) -> dict:
        """Rule init_model's params: models.<name>.init without pretrain_steps (which changes
        the pretraining, not the initial weights)."""
        init = self.config["models"][name]["init"]
        return {k: v for k, v in init.items() if k != "pretrain_steps"}

    def pretrained_models(self) -> list[str]:
        """The models built from `init` that are pretrained (init.pretrain_steps set)."""
        return [
            name
            for name, model in self.config["models"].items()
            if model["init"] and model["init"]["pretrain_steps"]
        ]

    def pretrain(self, name: str) -> dict:
        """Rule pretrain's job: the `pretrain` section as a training section of sekd.train.job
        (max_steps the model's init.pretrain_steps, block_size its max_length; one process, no
        validation), the model's dtype, and its languages (unused: the text has no prompts)."""
        p, model = self.config["pretrain"], self.config["models"][name]
        steps = model["init"]["pretrain_steps"]
        if not steps:
            raise self.error(f"models.{name}.init.pretrain_steps is not set: nothing to pretrain")
        training = {
            "max_steps": steps,
            "epochs": 1,  # max_steps decides (the Trainer cycles over the blocks)
            "batch_size": p["batch_size"],
            "per_device_batch_size": p["batch_size"],
            "max_length": p["block_size"],
            "eval_steps": None,
            "select_best_sft": False,
            **{k: p[k] for k in ("learning_rate", "warmup_ratio", "lr_scheduler")},
            **{k: p[k] for k in ("weight_decay", "logging_steps")},
        }
        return {
            "training": training,
            "languages": {},
            "dtype": model["dtype"],
            "trust_remote_code": False,
            "seed": p["seed"],
        }

    def pretrain_inputs(self) -> list[str]:
        """The pretraining text as an input (rule prepare_pretrain's output), when a model is
        pretrained; else none."""
        return ["results/data/pretrain.txt"] if self.pretrained_models() else []

    def pretrain_text(self) -> dict:
        """Rule prepare_pretrain's params (the text of `pretrain`: sample, order, adjacency)."""
        p = self.config["pretrain"]
        return {key: p[key] for key in ("max_pairs", "adjacent", "seed")}

    def run_model(self, run: str) -> dict:
        """The config entry of the model a run trains: sft/<model> or kd/<teacher>/<variant>."""
        kind, name = run.split("/")[:2]
        return self.config["models"][name if kind == "sft" else "student"]

    # --- data and tokenizer ----------------------------------------------------------------

    def tokenizer_revision(self) -> dict:
        """{"revision": ...} of the tokenizer's from_model when it is pinned, else {}."""
        name = self.config["tokenizer"]["from_model"]
        return pinned("revision", self.config["models"][name]["revision"] if name else None)

    def tokenizer_training(self) -> dict | None:
        """The tokenizer rule's `train` param: tokenizer.train (null: pretrained), with
        prompt.response_newline when not the default (the BPE is trained on the prompts)."""
        train = self.config["tokenizer"]["train"]
        return {**train, **self.not_default("prompt", "response_newline")} if train else train

    # --- training --------------------------------------------------------------------------

    def training_slice(self, model_name: str) -> dict:
        """The config a training job reads; nothing else, so unrelated edits rerun nothing.
        training.truncation and prompt.response_newline only when not their defaults;
        training.sft_selection never (`sft` adds it, to the SFT jobs only), nor training.finetune
        (`lora` says whether a job trains an adapter, and which)."""
        config = self.config
        model = config["models"][model_name]
        skip = ("sft_selection", "finetune")
        training = {k: v for k, v in config["training"].items() if k not in skip}
        if not self.not_default("training", "truncation"):
            training.pop("truncation")
        prompt = self.not_default("prompt", "response_newline")
        return {
            "training": training,
            "languages": self.languages_for(self.train_directions()),
            "dtype": model["dtype"],
            "trust_remote_code": model["trust_remote_code"],
            **pinned("revision", model["revision"]),
            **({"prompt": prompt} if prompt else {}),
        }

    def sft(self, model_name: str) -> dict:
        """What an SFT job computes from: the training slice without the runtime keys, with
        training.sft_selection when not the default, and for valid_bleu the decoding and scoring
        it selects with (sekd.train.sft_checkpoint)."""
        job = drop_runtime_keys(self.training_slice(model_name))
        job.update(self.lora(model_name, self.config["training"]["finetune"]))
        selection = self.not_default("training", "sft_selection")
        job["training"].update(selection)
        if selection.get("sft_selection") == "valid_bleu":
            job["valid_bleu"] = {
                "tokenize": self.config["scoring"]["tokenize"],
                "max_new_tokens": self.config["decoding"]["max_new_tokens"],
                "batch_size": self.config["decoding"]["batch_size"],
            }
        return job

    def lora(self, model_name: str, finetune: str) -> dict:
        """{"lora": models.<name>.lora} when the job trains a LoRA adapter (`finetune`: the
        config's training.finetune for SFT, a KD run's option), else {} (full fine-tuning: the
        params of the runs before LoRA existed stay as they were)."""
        return {"lora": self.config["models"][model_name]["lora"]} if finetune == "lora" else {}

    def variant(self, name: str) -> Variant:
        """The plan's KD run `name` (sekd.plan.study.planned_variant): matched, never parsed."""
        try:
            return study.planned_variant(self.config, name)
        except ValueError as error:
            raise self.error(str(error)) from None

    def kd_values(self, name: str) -> dict:
        """Rule kd's `run` param: the plan's objective, hyper-parameter values and run options of
        KD run `name`, as plain values (`Variant.values`; scripts/kd.py rebuilds the Variant)."""
        return self.variant(name).values()

    def kd_init(self, teacher: str, variant_name: str, seed: int | str) -> str | None:
        """Where a KD run's student starts when not from its base model (None): its run option
        `init`: the SFT'd student, or the word_kd run of the same teacher and seed."""
        variant = self.variant(variant_name)
        init = variant.option("init")
        if init == "word_kd_student" and variant.objective not in FDISTILL:
            raise self.error(
                f"kd/{teacher}/{variant_name}: init.word_kd_student is for the f-DISTILL "
                f"objectives ({', '.join(FDISTILL)}) only"
            )
        if init == "base":
            return None
        if init == "sft_student":
            return model_dir("sft/student", seed)
        word_kd = study.kd_run(self.config, "word_kd", split_teacher(teacher)[0], None)
        return model_dir(word_kd, seed)

    def kd(self, teacher: str, variant_name: str, seed: int | str) -> dict:
        """What a KD job computes from: the student's training slice without the runtime
        keys, and the sampling length of objectives that sample from the student."""
        job = drop_runtime_keys(self.training_slice("student"))
        job.update(self.lora("student", self.variant(variant_name).option("finetune")))
        if self.kd_init(teacher, variant_name, seed):  # this workflow's checkpoint, not the hub's
            job.pop("revision", None)
        if OBJECTIVES[self.variant(variant_name).objective].student_sequences:
            job["sequences"] = {"max_new_tokens": self.config["sequences"]["max_new_tokens"]}
        return job

    def kd_teacher(self, teacher: str, variant_name: str, seed: int | str) -> list[str]:
        """A KD job's teacher logits: the SFT'd model (online) or its store (<model>.<source>);
        none when the objective reads no teacher logits (sequence-level KD)."""
        model, source = split_teacher(teacher)
        objective = self.variant(variant_name).objective
        if source is not None and not serves(objective, self.source(source)["mode"]):
            raise self.error(
                f"kd/{teacher}/{variant_name}: a {source} teacher store cannot serve {objective} "
                "(it needs the teacher's full distribution, trains on sequences other than the "
                f"gold ones, or reads no teacher logits); name the run kd/{model}/..."
            )
        if not OBJECTIVES[objective].reads_teacher_logits:
            return []
        if source is None:
            return [model_dir(f"sft/{model}", seed)]
        return [f"results/teacher_store/{model}/{source}/seed{seed}"]

    # --- teacher ---------------------------------------------------------------------------

    def source(self, name: str) -> dict:
        """{mode, samples, temperature} of the teacher store the plan names `name`: the config's
        teacher_store, or the sparse store of its fidelity report. Matched by name, never parsed;
        a ValueError names the stores the plan has."""
        store = self.config["teacher_store"]
        for candidate in (store, {**store, "mode": "sparse"}):
            if candidate["mode"] != "online" and source_name(candidate) == name:
                if candidate["mode"] == "full":
                    return {"mode": "full", "samples": None, "temperature": None}
                samples, tau = int(candidate["samples"]), float(candidate["temperature"])
                return {"mode": "sparse", "samples": samples, "temperature": tau}
        known = sorted({source_name(c) for c in (store, {**store, "mode": "sparse"})} - {None})
        raise self.error(
            f"teacher store {name!r} is not in this config's plan (teacher_store gives: "
            f"{', '.join(known)})"
        )

    def store(self, teacher: str, source: str) -> dict:
        """What a teacher store job reads: its source (mode, K, τ), seed, and the data encoding."""
        config = self.config
        spec = self.source(source)
        if spec["mode"] == "sparse":
            spec["seed"] = config["teacher_store"]["seed"]
        return {
            **spec,
            "max_length": config["training"]["max_length"],
            "languages": self.languages_for(self.train_directions()),
            "dtype": config["models"][teacher]["dtype"],
            "trust_remote_code": config["models"][teacher]["trust_remote_code"],
            **pinned("student_revision", config["models"]["student"]["revision"]),
            **self.formatting(),
        }

    def outputs(self, model: str, generation: str) -> dict:
        """What a teacher_outputs job's outputs depend on: the generation setting (the plan's
        values of the one the path names), the prompts' encoding, the sentence BLEU's tokenizer,
        how the teacher loads, and the engine when not hf."""
        config = self.config
        engine = config["sequences"]["engine"]
        return {
            "generation": self._generation(generation),
            "max_length": config["training"]["max_length"],
            "max_new_tokens": config["sequences"]["max_new_tokens"],
            "languages": self.languages_for(self.train_directions()),
            "tokenize": config["scoring"]["tokenize"],
            "dtype": config["models"][model]["dtype"],
            "trust_remote_code": config["models"][model]["trust_remote_code"],
            # the default engine is left out: the params of the runs before the key existed stay
            **({} if engine == "hf" else {"engine": engine}),
            **self.formatting(),
        }

    def _generation(self, name: str) -> dict:
        try:  # the plan's values of the setting the path names
            return study.planned_generation(self.config, name)
        except ValueError as error:
            raise self.error(str(error)) from None

    def fidelity(self) -> dict[str, Any]:
        """The sparse store's fidelity report: the loss comparison and, per objective, the score
        files of the runs trained from the online teacher and from the store (Table 1's
        teacher)."""
        config = self.config
        teacher = study.default_teacher(config)
        sparse = {**config["teacher_store"], "mode": "sparse"}
        source = source_name(sparse)
        seed = config["seeds"][0]

        def scores(objective: str, store: dict) -> dict:
            return study.score_files(config, study.kd_run(config, objective, teacher, store))

        return {
            "teacher": teacher,
            "source": source,
            "loss": f"results/teacher_store/fidelity/{teacher}/{source}/seed{seed}.json",
            "objectives": {
                objective: {
                    "online": scores(objective, {"mode": "online"}),
                    "store": scores(objective, sparse),
                }
                for objective in config["teacher_store"]["fidelity"]["objectives"]
            },
        }

    # --- decoding and software -------------------------------------------------------------

    def decoding(self) -> dict:
        """The decode rule's `decoding` param: the decoding section, with
        prompt.response_newline when not the default."""
        return {**self.config["decoding"], **self.not_default("prompt", "response_newline")}

    def gpu_env(self, path: str) -> str:
        """The conda env file `path` (../envs/train.yaml or vllm.yaml) in the variant that
        environment.cuda names: the CUDA 12 builds under "12", the file itself under "13"."""
        name = os.path.basename(path).removesuffix(".yaml")
        variant = CUDA_ENVS[str(self.config["environment"]["cuda"])]
        return f"../envs/{variant.get(name, name)}.yaml"

    def engine_env(self, section: str) -> str:
        """The conda env file of the jobs that generate with `<section>.engine` (decoding for
        decode, sequences for teacher_outputs): vLLM's own env for vllm, the train env for hf."""
        engine = self.config[section]["engine"]
        if engine not in ENGINE_ENVS:
            raise self.error(
                f"{section}.engine: {engine!r} has no conda env; one of {', '.join(ENGINE_ENVS)}"
            )
        return self.gpu_env(ENGINE_ENVS[engine])
