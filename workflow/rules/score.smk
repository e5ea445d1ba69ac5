# Scored stages (mmgate.stages: a Stage with a `scorer`): a plugin's per-output scores of each task's
# decoded outputs, one job per checkpoint and stage, named score_<stage>. The demo declares none.


for _stage in (s for s in STAGES.values() if s.scorer):

    rule:
        """A scored stage's table for each of its tasks of one checkpoint (mmgate.scoring)."""
        name:
            f"score_{_stage.name}"
        input:
            **per_task(_stage.tasks, decoded=per_task_path("decode"), generation=True),
            golden=config["golden_set"],
        output:
            **per_task(_stage.tasks, table=per_task_path(_stage.name)),
        log:
            f"logs/score/{{ckpt}}/{_stage.name}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=_stage.gpu,
            mem_mb=8000,
            runtime=lambda wildcards, attempt: 30 * attempt,
        params:
            stage=_stage.name,
        script:
            "../scripts/score.py"
