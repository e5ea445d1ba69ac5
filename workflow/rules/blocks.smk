# sharding.shards_per_job > 1: one job loads the model (or each decoder) once for a block of a
# checkpoint's shards of one stage. The blocks are the same for every checkpoint, so each is a rule
# of its own (generate_block_000, ...; a profile's generate_block / ablate_block / decode_block
# entries apply to all of a stage) whose outputs are its shards' usual files: the DAG holds one job
# per block, not one per shard. One stage per block: a changed setting reruns its stage only.


if SHARDS_PER_JOB > 1:
    for _name, _units in block_rules("generate"):

        rule:
            """Generate a block of one checkpoint's shards, free and constrained, with one model load."""
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
            threads: block_threads("generate_block", 2)
            resources:
                **block_resources(
                    "generate_block",
                    _units,
                    60,
                    gpu=config["model"]["gpus"],
                    mem_mb=16000,
                ),
            params:
                templates=config["templates"],
                generation=config["generation"],
                ckpt_dir=ckpt_dir,
                identity=ckpt_identity,
                model=config["model"],
                task_modalities=config["task_modalities"],
                samples_per_shard=config["sharding"]["samples_per_shard"],
            script:
                "../scripts/lm_block.py"

    for _name, _units in block_rules("ablate"):

        rule:
            """Teacher-forced ablation losses of a block of one checkpoint's shards with one model load."""
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
            threads: block_threads("ablate_block", 2)
            resources:
                **block_resources(
                    "ablate_block",
                    _units,
                    60,
                    gpu=config["model"]["gpus"],
                    mem_mb=16000,
                ),
            params:
                templates=config["templates"],
                ablation=config["ablation"],
                ckpt_dir=ckpt_dir,
                identity=ckpt_identity,
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
