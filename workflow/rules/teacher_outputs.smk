# The teacher's outputs for the training prompts (sekd.teacher.outputs): generated once per
# teacher, generation setting and seed, and read by every KD run whose objective trains on them
# (seq_kd, seq_inter: beam<K>; fd_kl, fd_js, fd_tvd: sample-t<τ>-k<k>-p<p>; sekd.plan.sequences).


rule teacher_outputs:
    input:
        tokenizer="results/tokenizer",
        train=train_files(),
        teacher="results/models/sft/{model}/seed{seed}",
    output:
        directory("results/teacher_outputs/{model}/{generation}/seed{seed}"),
    params:
        job=lambda wc: JOBS.outputs(wc.model, wc.generation),
    threads: 1
    resources:
        # one GPU on a GPU cluster, sized per teacher and generation (sekd.plan.allocation)
        **SIZER.resources("teacher_outputs", tasks=1, nodes=1),
        # sequences.batch_size (speed only): a resource, which unlike params decides no rerun.
        # Samples do not depend on it (sekd.train.sampling); beam search may, in rare near-ties, as
        # the padding of a batch can change the fp rounding of the teacher's scores.
        batch_size=config["sequences"]["batch_size"],
    log:
        "results/logs/teacher_outputs/{model}/{generation}/seed{seed}.log",
    benchmark:
        "results/benchmarks/teacher_outputs/{model}/{generation}/seed{seed}.tsv"
    conda:
        JOBS.engine_env("sequences")
    script:
        "../scripts/teacher_outputs.py"
