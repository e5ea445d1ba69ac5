# Decoding of the constrained generations to waveforms or pixels (P0.3), in blocks of up to
# sharding.shards_per_job shards per job, each decoder built once per block (see generate.smk).


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
