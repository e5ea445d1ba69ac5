# sharding.shards_per_job > 1: one job loads the model (or each decoder) once for a block of a
# checkpoint's shards. The plan is the same for every checkpoint, so each block is a rule of its
# own (lm_block_000, ...; the profiles' lm_block / decode_block entries apply to all) whose outputs
# are its shards' usual files: the DAG holds one job per block, not one per shard.


if SHARDS_PER_JOB > 1:
    for _name, _units in block_rules("lm"):

        rule:
            """Generate and ablate a block of one checkpoint's shards with one model load (sharding.shards_per_job)."""
            name:
                _name
            input:
                check=p01_gate,
                token_space=config["token_space"],
                golden=config["golden_set"],
                marker=ckpt_marker,
            output:
                block_outputs(_units),
            log:
                f"logs/blocks/{{ckpt}}/{_name}.log",
            conda:
                ENV
            threads: block_threads("lm_block", 2)
            resources:
                **block_resources(
                    "lm_block", _units, 60, gpu=config["model"]["gpus"], mem_mb=16000
                ),
            params:
                templates=config["templates"],
                generation=config["generation"],
                ablation=config["ablation"],
                ckpt_dir=ckpt_dir,
                model=config["model"],
                task_modalities=config["task_modalities"],
                samples_per_shard=config["sharding"]["samples_per_shard"],
            script:
                "../scripts/lm_block.py"

    for _name, _units in block_rules("decode"):

        rule:
            """Decode a block of one checkpoint's constrained generation shards, each decoder built once."""
            name:
                _name
            input:
                generated=block_inputs(_units),
                token_space=config["token_space"],
                golden=config["golden_set"],
            output:
                block_outputs(_units),
            log:
                f"logs/blocks/{{ckpt}}/{_name}.log",
            conda:
                ENV
            threads: block_threads("decode_block", 2)
            resources:
                **block_resources("decode_block", _units, 30, gpu=1, mem_mb=8000),
            params:
                **DECODE_PARAMS,
            script:
                "../scripts/decode_block.py"
