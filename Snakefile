# mmgate: verify that an any-to-any token LM checkpoint is a valid generator.
# `snakemake --cores 2` runs every stage for every complete checkpoint; a new checkpoint adds
# only its own jobs and the trend. `check_token_space` is P0.1 alone, before any GPU work.
# The bundled demo config is used unless --configfile names yours (which replaces it).


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/token_space.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/fingerprint.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/ablate.smk"
include: "workflow/rules/report.smk"


rule all:
    """Every checkpoint's report and the trend (the default target)."""
    default_target: True
    input:
        all_targets,


onsuccess:
    end_successful_run()


# Snakemake calls no onsuccess (nor onstart) when nothing is to be done: that run ends with the
# verdict table too. A dry run still plans nothing and prints none.
when_nothing_to_do(workflow, end_successful_run)


onerror:
    report_skipped()
    print_verdicts(failed=True)
