# mmgate: verify that an any-to-any token LM checkpoint is a valid generator.
# `snakemake -n` plans every stage; `snakemake --cores 2 implemented` runs the stages built so far.


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


rule implemented:
    input:
        token_space_targets(),
        generate_targets(),
        fingerprint_targets(),
        ablation_targets(),
