"""`mmgate`: check a run's inputs before it, read its verdicts after it.

Before a cluster run: `token-space` and `golden` validate the inputs, `demo` builds the offline demo.
After it: `inspect` summarises the verdicts, `check` gives a training pipeline an exit code, `diff`
compares two checkpoints, `export` sends gate metrics to TensorBoard or W&B. The run itself is
`snakemake` (`install-profile` sets up the SLURM profile)."""

from __future__ import annotations

import argparse
from typing import Any
import sys

from .errors import MMGateError


def _demo(args: argparse.Namespace) -> None:
    import torch

    from .demo import build_demo

    torch.set_num_threads(args.threads)
    out = build_demo(args.out, golden_per_task=args.golden_per_task, train_steps=args.train_steps, seed=args.seed)
    print(f"demo built under {out}")


def _token_space(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .tokenspace import TokenSpace, ignored_keys, read_sha256_file

    if args.from_tokenizer or args.spec or args.force:
        if not (args.from_tokenizer and args.spec):
            print("mmgate: token-space: --from-tokenizer DIR and --spec SPEC.yaml go together (--force only with them); "
                  "see config/examples/token-space/ for specs", file=sys.stderr)
            return USAGE_ERROR
        from .tokenspace_builder import sidecar_path, write_token_space

        write_token_space(args.from_tokenizer, args.spec, args.path, force=args.force)
        print(f"{args.path} and {sidecar_path(args.path)}: written from {args.from_tokenizer} with {args.spec}")
    space = TokenSpace.load(args.path)
    print(f"{args.path}: valid, vocab_size {space.vocab_size}, sha256 {space.sha256}")
    for name, m in space.modalities.items():
        print(f"  {name}: {m.n_codebooks} x {m.codebook_size} codes, {m.layout}, {m.start_token} ... {m.end_token}")
    ignored = ignored_keys(json.loads(Path(args.path).read_text()))
    if ignored:
        print(f"  note: keys mmgate does not use are kept and ignored: {', '.join(ignored)}")
    sidecar = Path(args.path).with_suffix(".sha256")
    if sidecar.exists() and read_sha256_file(sidecar) != space.sha256:
        print(f"mmgate: {sidecar} records {read_sha256_file(sidecar)}, not this file's hash: it is stale. Every artifact "
              f"tokenized with this file should record {space.sha256}; rewrite it with `sha256sum {args.path} > {sidecar}` "
              "only if the file's change was intended.", file=sys.stderr)
        return 1
    return 0


def _golden(args: argparse.Namespace) -> None:
    from .golden import load_golden
    from .tokenspace import TokenSpace

    frame = load_golden(args.path, TokenSpace.load(args.token_space))
    counts = frame.groupby("task")["expected_len"].agg(["count", "min", "max"])
    print(f"{args.path}: valid, {len(frame)} examples")
    print(text_table(["task", "examples", "shortest expected output", "longest"],
                     [[task, int(row["count"]), int(row["min"]), int(row["max"])] for task, row in counts.iterrows()]))
    print("(expected output lengths in tokens)")


USAGE_ERROR = 2  # no report, an unreadable one, or bad arguments (1 is a gate failure)


class ReportMissing(MMGateError):
    """No readable gates.json where the user pointed."""


def report_folder() -> str:
    """How help and errors name a checkpoint's report folder."""
    from .stages import page

    return f"a checkpoint's report folder ({page('gates_json', ckpt='<name>').parent}/)"


def _gate_files(path: str, results: str = "results") -> list:
    """gates.json files at `path`: the file, a checkpoint's report folder, results/report or results/ (no deeper),
    or a checkpoint's name under `results`."""
    from pathlib import Path

    from .stages import page

    root = Path(path)
    by_name = page("gates_json", results, ckpt=path)
    name = by_name.name
    if not root.exists() and by_name.exists():
        return [by_name]
    if root.is_file() and root.name == name:
        return [root]
    if (root / name).exists():
        return [root / name]
    in_results = page("gates_json", "", ckpt="*")  # report/ckpt=*/gates.json, below results/
    in_pages = in_results.relative_to(in_results.parts[0])  # below results/report/
    files = sorted(root.glob(str(in_results))) or sorted(root.glob(str(in_pages)))
    if not files:
        raise ReportMissing(f"{path}: no {name} found (looked for {path}/{name}, {path}/{in_results} and "
                            f"{path}/{in_pages}, and for a checkpoint named {path!r}: {by_name}). Run "
                            f"the workflow's `report` rule first, or point at results/, {report_folder()} or "
                            "name a checkpoint (with --results for a results folder elsewhere).")
    return files


def _load_reports(path: str, results: str = "results") -> list[dict]:
    """Every report under `path` (or of the checkpoint named `path`), ordered by training step."""
    import json

    reports = []
    for file in _gate_files(path, results):
        try:
            report = json.loads(file.read_text())
            if not isinstance(report, dict) or not isinstance(report.get("gates"), list):
                raise ValueError("it has no list of gates")
            for gate in report["gates"]:
                gate["gate"], gate["verdict"]  # noqa: B018  (each gate names itself and its verdict)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ReportMissing(f"{file}: not a readable mmgate gates.json ({type(err).__name__}: {err}). Rerun the "
                                "workflow's report rule for this checkpoint (delete the file first).") from err
        report["_path"] = file
        reports.append(report)
    return sorted(reports, key=_step_order)


PLAN_FILE = ".mmgate-run.json"  # under results/: the checkpoints the last run's config verifies


def record_plan(results: str, checkpoints: Any, config_files: Any) -> None:
    """Write which checkpoints the run's config verifies (by name), for `inspect` and `check`."""
    import json
    import time
    from pathlib import Path

    from .io import write_text

    try:
        write_text(Path(results) / PLAN_FILE, json.dumps({"checkpoints": sorted(checkpoints),
                                                          "config_files": [str(f) for f in config_files],
                                                          "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    except OSError:  # a record for the CLI's convenience: never a reason for a run to fail
        pass


def planned_checkpoints(path: str, config: str | None = None) -> set[str] | None:
    """The checkpoints the current config verifies: from `config` (a config file) when given, else from the
    last run's record under the results folder at `path`; None when neither says."""
    import json
    from pathlib import Path

    if config:
        from .checkpoints import discover_checkpoints
        from .config import read_yaml

        settings = read_yaml(config) or {}  # the checkpoint keys alone: a layered config's part is enough
        found = discover_checkpoints(settings.get("checkpoints"), settings.get("checkpoint_glob"), None)
        return set(found.checkpoints) | {name for name, *_ in found.skipped}
    root = Path(path)
    for candidate in (root / PLAN_FILE, root.parent / PLAN_FILE):
        if candidate.exists():
            try:
                return set(json.loads(candidate.read_text())["checkpoints"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def _current(reports: list[dict], args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """(reports of the checkpoints the current config verifies, names of the others): a checkpoint removed
    from the config is listed, never judged."""
    from pathlib import Path

    one = (Path(args.path).name == "gates.json" or (Path(args.path) / "gates.json").exists()
           or not Path(args.path).exists())  # a checkpoint asked for by name
    plan = None if one else planned_checkpoints(args.path, getattr(args, "config", None))
    if plan is None:  # one checkpoint's report asked for by name, or no record of a plan
        return reports, []
    return ([r for r in reports if r["checkpoint"] in plan],
            sorted(str(r["checkpoint"]) for r in reports if r["checkpoint"] not in plan))


def missing_evidence(report: dict) -> list[str]:
    """Files the report rests on that are gone (a deleted shard): the next run remakes them."""
    from pathlib import Path

    from .compare import workflow_root

    workdir = workflow_root(Path(report["_path"]))
    files = {e for g in report["gates"] for e in g.get("evidence") or [] if isinstance(e, str)}
    files |= {f for f in (report.get("provenance") or {}).get("inputs") or [] if isinstance(f, str)}  # every file it read
    return sorted(f for f in files if not (Path(f) if Path(f).is_absolute() else workdir / f).exists())


def _step_order(report: dict) -> tuple:
    return report.get("step") is None, report.get("step") or 0, str(report.get("checkpoint"))


def _overall(report: dict) -> str:
    """A report's overall line (a summary carries it already)."""
    from .gates import overall_line

    return report["overall_line"] if "overall_line" in report else overall_line(report)


def _summary(report: dict) -> dict:
    from .gates import evidence_in_order
    from .report import sample_sizes_line
    from .stages import page

    gates = report["gates"]
    return {
        "checkpoint": report["checkpoint"], "step": report.get("step"), "overall": report["overall"],
        "overall_note": report.get("overall_note"), "overall_line": _overall(report),
        "report": str(report["_path"].with_name(page("report_html", ckpt="").name)),
        "assessment": report.get("assessment", {}),
        "gates": {g["gate"]: g["verdict"] for g in gates},
        "reasons": {g["gate"]: g.get("reasons", []) for g in gates if g.get("reasons")},
        "notes": {g["gate"]: g.get("notes", []) for g in gates if g.get("notes")},
        "samples": sample_sizes_line(report.get("provenance") or {}),
        "fixes": {g["gate"]: g["fix"] for g in gates if g.get("fix")},
        "evidence": {g["gate"]: evidence_in_order(g) for g in gates if g["verdict"] in ("FAIL", "WARN")},
    }


def verdict_table(summaries: list[dict], marks: dict[str, str] | None = None) -> str:
    """One line per checkpoint: each gate's verdict and the overall one (`marks`: a note per checkpoint)."""
    from .gates import GATE_IDS

    ids = [g for g in GATE_IDS if any(g in s["gates"] for s in summaries)]
    ids += sorted({g for s in summaries for g in s["gates"]} - set(ids))
    width = max(10, *(len(s["checkpoint"]) for s in summaries))
    lines = [f"{'checkpoint':<{width}}  " + " ".join(f"{g:<5}" for g in ids) + "  overall"]
    for s in summaries:
        lines.append(f"{s['checkpoint']:<{width}}  " + " ".join(f"{s['gates'].get(g, '-'):<5}" for g in ids)
                     + f"  {_overall(s)}" + (f"  {marks[s['checkpoint']]}" if marks and s["checkpoint"] in marks else ""))
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> None:
    import json

    reports, others = _current(_load_reports(args.path, args.results), args)
    summaries = [_summary(report) for report in reports]
    missing = {r["checkpoint"]: missing_evidence(r) for r in reports}
    if args.json:
        print(json.dumps(summaries, indent=1))
        return
    print(verdict_table(summaries) if summaries else "no report of a checkpoint in this run's config")
    if others:
        print(f"not in this run's config (reports kept, not judged): {', '.join(others)}")
    for name, files in missing.items():
        if files:
            print(f"warning: {name}: {len(files)} file(s) its report rests on are missing, e.g. {files[0]}; rerun "
                  "snakemake to remake them")
    for s in summaries:
        print(f"\n{s['checkpoint']}: {_overall(s)}" + (f"  [samples per task: {s['samples']}]" if s["samples"] else ""))
        for key, line in s["assessment"].items():
            print(f"  {key.replace('_', ' ')}: {line}")
        for gate, reasons in s["reasons"].items():
            print(f"  {gate} {s['gates'][gate]}:")
            for reason in reasons:
                print(f"      {reason}")
            if s["fixes"].get(gate):
                print(f"      fix: {s['fixes'][gate]}")
            files = s["evidence"].get(gate, [])
            shown = files if args.all else files[:EVIDENCE_SHOWN]
            for where in shown:
                print(f"      look at {where}")
            if len(files) > len(shown):
                print(f"      and {len(files) - len(shown)} more (every file: mmgate inspect {args.path} --all)")
        print(f"  report: {s['report']}")


EVIDENCE_SHOWN = 3  # evidence files per gate `inspect` lists before "and N more" (--all: every one)


def end_of_run(checkpoints: list[str], results: str = "results", started: float | None = None,
               failed: bool = False) -> str:
    """What a Snakemake run prints last: the verdict table of this run's checkpoints and where the
    reports are; after a failure, which checkpoints have no report and which are from an earlier run."""
    from .stages import page

    reports, missing, marks = [], [], {}
    for name in checkpoints:
        path = page("gates_json", results, ckpt=name)
        try:
            report = _load_reports(str(path))[0]
        except ReportMissing:
            missing.append(name)
            continue
        if started is not None and path.stat().st_mtime < started:
            marks[name] = "(report from an earlier run)" if failed else "(unchanged)"
        reports.append(report)
    head = "mmgate: the run failed; verdicts on disk:" if failed else "mmgate: verdicts:"
    if not reports:
        return f"{head} none yet (no checkpoint has a report)" if checkpoints else "mmgate: no checkpoints to verify"
    summaries = [_summary(r) for r in sorted(reports, key=_step_order)]
    lines = [head, verdict_table(summaries, marks)]
    if missing:
        lines.append(f"no report yet: {', '.join(missing)}")
    lines.append(f"reports: {page('report_html', results, ckpt='<checkpoint>')}; details: mmgate inspect {results}")
    return "\n".join(lines)


def blocking_reasons(gate: dict, strict: bool, require_free_compliance: bool) -> list[str]:
    """Why a P0 gate fails `mmgate check`: FAIL or SKIP always; with `strict`, a verdict resting on too
    little evidence (too few samples, a missing free run, an interval across its pass mark); with
    `require_free_compliance`, P0.2's "free runs need constrained decoding"."""
    from .gates import FAIL, SKIP, WARN, evidence_doubts

    if gate["verdict"] in (FAIL, SKIP):
        return gate.get("reasons") or [gate["verdict"]]
    reasons = evidence_doubts(gate) if strict else []
    other_warning = gate["verdict"] == WARN and not set(gate.get("failures") or ["unnamed"]) <= {"free_violation"}
    if strict and other_warning and not reasons:  # a warning of a kind this version does not know: not trusted
        reasons = gate.get("reasons") or [WARN]
    if require_free_compliance and gate["verdict"] == WARN and "free_violation" in gate.get("failures", []):
        reasons += [r for r in gate.get("reasons", []) if "free run" in r] or ["free runs need constrained decoding"]
    return reasons


def _check(args: argparse.Namespace) -> int:
    from .gates import P0

    status, lines = 0, []
    reports, others = _current(_load_reports(args.path, args.results), args)
    if others:
        lines.append(f"not in this run's config (not judged): {', '.join(others)}")
    for report in reports:
        verdicts = {g["gate"]: g for g in report["gates"]}
        missing = [g for g in P0 if g not in verdicts]
        why = {g: blocking_reasons(verdicts[g], args.strict, args.require_free_compliance) for g in P0 if g in verdicts}
        bad = [g for g in P0 if why.get(g)]
        if missing:
            lines.append(f"{report['checkpoint']}: FAIL (incomplete report: no {', '.join(missing)} in {report['_path']})")
            status = 1
            continue
        p0 = " ".join(f"{g} {verdicts[g]['verdict']}" for g in P0)
        lines.append(f"{report['checkpoint']}: {'FAIL' if bad else 'PASS'} ({p0}; overall: {_overall(report)})")
        for gate in bad:
            for reason in why[gate]:
                lines.append(f"    {gate}: {reason.removeprefix(gate + ': ')}")
        status |= bool(bad)
    try:  # the status is decided before printing, so `mmgate check results | head` keeps it
        print("\n".join(lines))
    except BrokenPipeError:
        _silence_stdout()
    return 1 if status else 0


def _silence_stdout() -> None:
    """After the reader closed the pipe: send the rest to /dev/null, so the flush at exit does not fail too."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _one_report(name: str, results: str) -> dict:
    """A report by checkpoint name (under `results`) or by path (gates.json or its folder)."""
    from pathlib import Path

    from .stages import page

    path = Path(name)
    if not path.exists():
        path = page("gates_json", results, ckpt=name).parent
        if not path.exists():
            raise ReportMissing(f"{name}: neither a path nor a checkpoint with a report ({path} does not exist). "
                                f"Name a checkpoint under {results}/report/ or give its report folder.")
    reports = _load_reports(str(path))
    if len(reports) != 1:
        raise ReportMissing(f"{name}: holds {len(reports)} reports; name one checkpoint or its report folder")
    return reports[0]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain columns, as wide as their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _diff(args: argparse.Namespace) -> None:
    from .compare import diff_reports, read_prompts, stage_tables, workflow_root
    from .render import diff_media, measured, render_diff

    a, b = _one_report(args.a, args.results), _one_report(args.b, args.results)
    diff = diff_reports(a, b, every_metric=args.all)
    name_a, name_b = str(diff["a"]), str(diff["b"])
    print(f"mmgate diff: {name_a} -> {name_b}\n")
    print(text_table(["verdict", name_a, name_b, ""], [[v["gate"], v["a"], v["b"], "changed" if v["changed"] else ""]
                                                       for v in diff["verdicts"]]))
    mark = {True: " ok", False: " MISS", None: ""}
    rows = [[m["gate"], m["task"], m["metric"], measured(m["a"], m["a_ci"]) + mark[m["a_met"]],
             measured(m["b"], m["b_ci"]) + mark[m["b_met"]], measured(m["delta"]),
             {False: "apart", True: "overlap", None: ""}[m["intervals_overlap"]], m["pass_mark"]]
            for m in diff["metrics"] if args.all or m["delta"] != 0 or m["a_met"] != m["b_met"]]
    print(f"\nmetrics that changed ({name_b} - {name_a}; [95 % CI]; ok/MISS against the pass mark; "
          "apart: the intervals do not overlap):\n")
    print(text_table(["gate", "task", "metric", name_a, name_b, "change", "intervals", "pass mark"], rows)
          if rows else "  none")
    if args.html:
        from pathlib import Path

        from .io import write_text

        media = {}
        root_a, root_b = workflow_root(a["_path"]), workflow_root(b["_path"])
        try:
            media = diff_media(stage_tables(a, root_a), stage_tables(b, root_b), read_prompts(b, root_b))
        except MMGateError as err:  # the verdicts are still worth a page
            print(f"mmgate: diff --html: outputs left out ({err})", file=sys.stderr)
        write_text(Path(args.html), render_diff(diff, media))
        print(f"\nwrote {args.html}")


def _export(args: argparse.Namespace) -> int:
    """Exit 0 when something was exported (refused checkpoints are named on stderr), 1 when nothing could be."""
    from .compare import workflow_root
    from .export import export_tensorboard, export_wandb, refusal_message, without_step

    if not (args.tensorboard or args.wandb):
        print("mmgate: export: name a target, --tensorboard DIR and/or --wandb PROJECT", file=sys.stderr)
        return USAGE_ERROR
    reports = _load_reports(args.path)
    roots = [workflow_root(r["_path"]) for r in reports]
    refused = [] if args.allow_no_step else without_step(reports)
    if refused:
        print(refusal_message(refused), file=sys.stderr)
    if len(refused) == len(reports):
        return 1
    if args.tensorboard:
        done = export_tensorboard(reports, roots, args.tensorboard, args.media, args.allow_no_step)
        print("\n".join(done.notes + [f"wrote {done.written} checkpoint(s) to {', '.join(done.runs)}: "
                                       f"tensorboard --logdir {args.tensorboard}"]))
    if args.wandb:
        done = export_wandb(reports, roots, args.wandb, args.media, args.allow_no_step)
        print("\n".join(done.notes + [f"logged {done.written} new checkpoint(s) to W&B project {args.wandb}: "
                                       f"run(s) {', '.join(done.runs)}"]))
    return 0


def _install_profile(args: argparse.Namespace) -> None:
    import shutil
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "profiles" / args.name
    if not (source / "config.yaml").exists():
        from .errors import MMGateError

        raise MMGateError(f"no profile {args.name!r} in {source.parent} (have: {sorted(p.name for p in source.parent.iterdir())})")
    target = Path(args.dest).expanduser() / args.name
    if target.exists() and not args.force:
        from .errors import MMGateError

        raise MMGateError(f"{target} exists; pass --force to overwrite it")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "config.yaml", target / "config.yaml")
    default = Path(DEFAULT_PROFILES).expanduser().resolve() == target.parent.resolve()
    use = args.name if default else str(target)  # Snakemake finds a bare name only in its own profile folders
    print(f"installed {target / 'config.yaml'}: edit slurm_account, slurm_partition and gpu_model, then run "
          f"`snakemake --profile {use}`")


DEFAULT_PROFILES = "~/.config/snakemake"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mmgate")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mmgate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 success (check: every P0 gate passes), 1 a gate failed or an input is invalid, "
               "2 bad arguments or no readable report")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")

    def reads_reports(parser: argparse.ArgumentParser) -> None:
        """The arguments `inspect` and `check` share: which reports, and which checkpoints to judge."""
        parser.add_argument("path", help=f"results/, {report_folder()} or a checkpoint's name")
        parser.add_argument("--results", default="results", help="results folder a checkpoint name refers to "
                            "(default: %(default)s)")
        parser.add_argument("--config", metavar="CONFIG.yaml", help="judge the checkpoints this config verifies "
                            "(default: those of the last run, recorded under the results folder)")

    demo = command("demo", "build the offline demo models and data")
    demo.add_argument("--out", default="resources/demo", help="where to build it (default: %(default)s)")
    demo.add_argument("--golden-per-task", type=int, default=256, help="golden examples per task (default: %(default)s)")
    demo.add_argument("--train-steps", type=int, default=400, help="LoRA steps per demo checkpoint (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data and the models (default: %(default)s)")
    demo.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    demo.set_defaults(func=_demo)
    ts = command("token-space", "validate token_space.json and print its hash (with --from-tokenizer: write it first)")
    ts.add_argument("path", help="token_space.json to validate, or to write with --from-tokenizer and --spec")
    ts.add_argument("--from-tokenizer", metavar="DIR", help="write PATH and its .sha256 sidecar from the tokenizer in DIR "
                    "(the one the model was trained with); needs --spec")
    ts.add_argument("--spec", metavar="SPEC.yaml", help="per modality: token pattern, codebook_size, n_codebooks, layout, "
                    "start/end/pad tokens, codec (examples: config/examples/token-space/)")
    ts.add_argument("--force", action="store_true", help="overwrite an existing PATH whose content differs (artifacts that "
                    "recorded its old hash will then fail P0.1)")
    ts.set_defaults(func=_token_space)
    golden = command("golden", "validate a golden set against a token space")
    golden.add_argument("path", help="golden set, parquet or JSONL (one row per example)")
    golden.add_argument("--token-space", required=True, help="the token_space.json its modality tokens must fit")
    golden.set_defaults(func=_golden)
    inspect = command("inspect", "summarise a results tree or one checkpoint's report")
    reads_reports(inspect)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--all", action="store_true", help=f"every evidence file of each gate (default: the first "
                         f"{EVIDENCE_SHOWN}, those behind the verdict first)")
    inspect.set_defaults(func=_inspect)
    check = command("check", "exit 0 when every P0 gate passes, 1 when one fails or is skipped, 2 when there is "
                             "no readable report (for training pipelines)")
    reads_reports(check)
    check.add_argument("--strict", action="store_true", help="also fail a P0 verdict that rests on too little evidence: "
                       "too few samples (N < gates.min_n), no free-mode run, or an interval that crosses its pass mark")
    check.add_argument("--require-free-compliance", action="store_true", help="also fail P0.2's WARN \"free runs need "
                       "constrained decoding\" (for a model that must stay in its modality without the constraint)")
    check.set_defaults(func=_check)
    diff = command("diff", "compare two checkpoints' reports: verdict changes and metric deltas with intervals")
    diff.add_argument("a", help="the reference: a checkpoint name under RESULTS/report/, or its report folder")
    diff.add_argument("b", help="the checkpoint to compare with it (same forms)")
    diff.add_argument("--results", default="results", help="results folder the names refer to (default: %(default)s)")
    diff.add_argument("--all", action="store_true", help="every numeric value, not only pass-mark and trend metrics "
                      "that changed")
    diff.add_argument("--html", metavar="PATH", help="also write an HTML page with the same prompts' outputs side by side")
    diff.set_defaults(func=_diff)
    export = command("export", "gate metrics by step and a few outputs to TensorBoard or W&B (optional packages)")
    export.add_argument("path", help=f"results/ (every checkpoint) or {report_folder()}")
    export.add_argument("--tensorboard", metavar="DIR", help="write event files under DIR/<training run>/ "
                        "(needs the tensorboard package)")
    export.add_argument("--wandb", metavar="PROJECT", help="log to this W&B project, one run per training run "
                        "(needs the wandb package and a login; an offline run is not resumed, so exporting again repeats points)")
    export.add_argument("--media", type=int, default=2, metavar="N", help="decoded outputs per write task and "
                        "checkpoint, those with a problem first (default: %(default)s)")
    export.add_argument("--allow-no-step", action="store_true", help="also export checkpoints whose report has no "
                        "training step, by name order, in a run of their own (DIR/<run>/by-name-order; W&B: "
                        "'<run> (by name order)') whose x is a position, not a step; without it they are refused")
    export.set_defaults(func=_export)
    install = command("install-profile", "copy a Snakemake profile (default: slurm) to ~/.config/snakemake")
    install.add_argument("name", nargs="?", default="slurm", help="profile in profiles/ (default: %(default)s)")
    install.add_argument("--dest", default="~/.config/snakemake", help="profiles folder (default: %(default)s)")
    install.add_argument("--force", action="store_true", help="overwrite an installed profile of that name")
    install.set_defaults(func=_install_profile)
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        if isinstance(result, int):
            return result
    except ReportMissing as err:
        print(f"mmgate: {err}", file=sys.stderr)
        return USAGE_ERROR
    except MMGateError as err:
        print(f"mmgate: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mmgate inspect results | head`: the reader has all it wanted
        _silence_stdout()
    return 0

if __name__ == "__main__":
    sys.exit(main())
