"""Gate verdicts, gates.json/parquet and the self-contained HTML report of one checkpoint."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.gates import Thresholds, gates_table, overall_line
from mmgate.golden import load_golden
from mmgate.io import provenance, strict_json, write_parquet, write_text
from mmgate.fingerprint import FingerprintSettings
from mmgate.render import render_report
from mmgate.report import build, length_audit, model_provenance, report_provenance
from mmgate.training import training_dynamics, training_log_path
from mmgate.scripting import run
from mmgate.stages import STAGES
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.params.token_space, smk.params.config["task_modalities"])
    golden = load_golden(smk.input.golden[0], space)
    thresholds = Thresholds.from_config(smk.params.thresholds)
    training_log = None
    path = training_log_path(smk.params.training_log, smk.params.ckpt_dir)  # "{checkpoint_dir}": a log per checkpoint
    if path is not None:
        if path.exists():
            training_log = path
        else:
            log.warning("report.training_log: %s does not exist; TD is SKIP", path)
    inputs = {name: list(files) for name, files in smk.input.items() if name not in ("golden", "training_log")}
    prov = report_provenance(smk.wildcards.ckpt, smk.params.ckpt_dir, smk.params.config, space, smk.input.golden[0], golden)
    prov["model"] = model_provenance(inputs)
    prov["inputs"] = sorted(str(f) for f in smk.input)  # every file it read: `mmgate inspect` warns when one is gone
    report = build(inputs, thresholds, golden, training_log, prov, checkpoint=smk.wildcards.ckpt,
                   samples_per_task=smk.params.config["generation"]["samples_per_task"],
                   training_log_columns=smk.params.training_log_columns)
    audit = length_audit(golden, smk.params.length_limits)
    dynamics = training_dynamics(training_log, thresholds, smk.params.training_log_columns) if training_log else None
    summary = {k: report[k] for k in ("checkpoint", "step", "overall", "overall_note", "assessment", "provenance", "gates")}
    summary["length_audit"] = audit.to_dict("records")
    if dynamics is not None:
        summary["training_dynamics"] = dynamics[1].to_dict("records")
    write_text(smk.output.json, strict_json(summary, indent=1) + "\n")
    write_parquet(gates_table(report["gate_objects"]), smk.output.table,
                  provenance("report", space.sha256, checkpoint=smk.wildcards.ckpt, overall=report["overall"]),
                  STAGES["gates"])
    fingerprints = FingerprintSettings.from_config(smk.params.config["fingerprint"])
    write_text(smk.output.html, render_report(report, audit, dynamics, fingerprints, seed=smk.params.config["generation"]["seed"]))
    for gate in report["gates"]:
        log.info("%s %s%s", gate["gate"], gate["verdict"], "".join(f"\n    {r}" for r in gate["reasons"]))
    log.info("%s: %s", smk.wildcards.ckpt, overall_line(report))


run(snakemake, main)
