# Fingerprints of the decoded outputs and collapse across prompts (P1.3).


rule fingerprint:
    """Fingerprint every decoded output of each write task of one checkpoint, and find collapse across prompts (P1.3)."""
    input:
        **per_task(
            WRITE_TASKS,
            decoded=per_task_path("decode"),
            media=per_task_media("decode"),
            generated=per_task_path("generate", mode="constrained"),
            generation=True,
        ),
        token_space=config["token_space"],
    output:
        **per_task(
            WRITE_TASKS,
            table=per_task_path("fingerprint"),
            collapse=per_task_path("collapse"),
        ),
    log:
        "logs/fingerprint/{ckpt}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        settings=config["fingerprint"],
        task_modalities=config["task_modalities"],
    script:
        "../scripts/fingerprint.py"
