# Generation (P0.2, P1.1): the language model's GPU work, with ablate.smk.
#
# One job loads the model (or, in decode.smk, each decoder) once for a block of up to
# sharding.shards_per_job of a checkpoint's shards of one stage; with 1, each block holds one shard.
# The blocks are the same for every checkpoint, so each is a rule of its own (generate_block_000,
# ...; a profile's generate_block / ablate_block / decode_block entries apply to all of a stage)
# whose outputs are its shards' files (mmgate.stages): the DAG holds one job per block, not one per
# shard, and the files are the same whatever the block size. One stage per block: a changed
# setting reruns its stage only.


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
