# P0.1: the token space must be the same everywhere before any GPU work.


rule token_space_stage2:
    """Check the token-space hash each stage-2 shard recorded."""
    input:
        token_space=config["token_space"],
        shards=STAGE2_SHARDS,
    output:
        stage_path("stage2"),
    log:
        "logs/token_space/stage2.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/token_space_stage2.py"


# A checkpoint (in Snakemake's sense): the report of a checkpoint that fails P0.1 is planned from
# this table alone, so no GPU job runs for it, and its gates.json still says why.
checkpoint token_space:
    """Check one checkpoint's tokenizer, embedding rows and recorded hashes against token_space.json."""
    input:
        token_space=config["token_space"],
        stage2=stage_path("stage2"),
        marker=ckpt_marker,
        stage3=stage3_marker(),
    output:
        stage_path("check"),
    log:
        "logs/token_space/{ckpt}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ckpt_dir=ckpt_dir,
        identity=ckpt_identity,
        base=model_base,
        stage3_init=stage3_dir,
        trust_remote_code=config["model"]["trust_remote_code"],
        model_class=config["model"].get("class"),
        noop_adapter_fails=config["gates"]["noop_adapter_fails"],
        templates=config["templates"],
    script:
        "../scripts/token_space.py"


# `snakemake check_token_space`: P0.1 alone, before any GPU work; fails when any checkpoint fails.
rule check_token_space:
    """P0.1 alone for every checkpoint, before any GPU work."""
    input:
        token_space_targets(),
    log:
        "logs/token_space/verdicts.log",
    conda:
        ENV
    script:
        "../scripts/token_space_verdicts.py"
