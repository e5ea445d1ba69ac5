# mmgate: verify that an any-to-any token LM checkpoint is a valid generator.
# Run the demo: `snakemake --cores 2 check_token_space` (see README); on a cluster:
# `snakemake --profile profiles/slurm`.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/token_space.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/ablate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),


rule check_token_space:
    input:
        token_space_targets(),
