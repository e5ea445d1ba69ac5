# sharding.shards_per_job > 1: one job loads the model (or each decoder) once for a block of a
# checkpoint's shards; the one-shard rules (generate, ablate, decode) move each shard into place.


if SHARDS_PER_JOB > 1:

    rule lm_block:
        """Generate and ablate several shards of one checkpoint with one model load (sharding.shards_per_job)."""
        input:
            check=p01_gate,
            token_space=config["token_space"],
            golden=config["golden_set"],
            marker=ckpt_marker,
        output:
            temp(directory("results/blocks/ckpt={ckpt}/lm-{block}")),
        log:
            "logs/blocks/{ckpt}/lm-{block}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=config["model"]["gpus"],
            mem_mb=16000,
            runtime=block_runtime("lm", 60),
        params:
            units=block_units("lm"),
            templates=config["templates"],
            generation=config["generation"],
            ablation=config["ablation"],
            ckpt_dir=ckpt_dir,
            model=config["model"],
            task_modalities=config["task_modalities"],
            samples_per_shard=config["sharding"]["samples_per_shard"],
        script:
            "../scripts/lm_block.py"

    rule decode_block:
        """Decode several constrained generation shards of one checkpoint, each decoder built once."""
        input:
            generated=block_inputs,
            token_space=config["token_space"],
            golden=config["golden_set"],
        output:
            temp(directory("results/blocks/ckpt={ckpt}/decode-{block}")),
        log:
            "logs/blocks/{ckpt}/decode-{block}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=block_runtime("decode", 30),
        params:
            **DECODE_PARAMS,
            units=block_units("decode"),
        script:
            "../scripts/decode_block.py"
