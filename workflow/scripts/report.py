"""Gate verdicts, gates.json/parquet and the self-contained HTML report of one checkpoint."""

import json
from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.gates import Thresholds, gates_table
from mmgate.golden import load_golden
from mmgate.io import provenance, write_parquet, write_text
from mmgate.report import build, length_audit, render_html, training_dynamics
from mmgate.scripting import run
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.params.token_space)
    report = build(smk.params.results, smk.wildcards.ckpt, Thresholds.from_config(smk.params.thresholds))
    audit = length_audit(load_golden(smk.params.golden, space), smk.params.length_limits)
    dynamics = None
    if smk.params.training_log:  # "{checkpoint_dir}" names a per-checkpoint log
        path = Path(smk.params.training_log.format(checkpoint_dir=smk.params.ckpt_dir))
        if path.exists():
            dynamics = training_dynamics(path)
        else:
            log.warning("report.training_log: %s does not exist; the report has no training-dynamics section", path)
    summary = {k: report[k] for k in ("checkpoint", "step", "overall", "gates")}
    summary["length_audit"] = audit.to_dict("records")
    if dynamics is not None:
        summary["training_dynamics"] = dynamics[1].to_dict("records")
    write_text(smk.output.json, json.dumps(summary, indent=1, default=str) + "\n")
    write_parquet(gates_table(report["gate_objects"]), smk.output.table,
                  provenance("report", space.sha256, checkpoint=smk.wildcards.ckpt, overall=report["overall"]))
    write_text(smk.output.html, render_html(report, audit, dynamics))
    for gate in report["gates"]:
        log.info("%s %s %s", gate["gate"], gate["verdict"], gate["detail"] or "")
    log.info("%s: %s", smk.wildcards.ckpt, report["overall"])


run(snakemake, main)
