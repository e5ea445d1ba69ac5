"""`mmgate` command line: build the demo and validate inputs before a cluster run."""

from __future__ import annotations

import argparse
import sys

from .errors import MMGateError


def _demo(args: argparse.Namespace) -> None:
    import torch

    from .demo import build_demo

    torch.set_num_threads(args.threads)
    out = build_demo(args.out, golden_per_task=args.golden_per_task, train_steps=args.train_steps, seed=args.seed)
    print(f"demo built under {out}")


def _token_space(args: argparse.Namespace) -> None:
    from .tokenspace import TokenSpace

    space = TokenSpace.load(args.path)
    print(f"{args.path}: valid, vocab_size {space.vocab_size}, sha256 {space.sha256}")
    for name, m in space.modalities.items():
        print(f"  {name}: {m.n_codebooks} x {m.codebook_size} codes, {m.layout}, {m.start_token} ... {m.end_token}")


def _golden(args: argparse.Namespace) -> None:
    from .golden import load_golden
    from .tokenspace import TokenSpace

    frame = load_golden(args.path, TokenSpace.load(args.token_space))
    counts = frame.groupby("task")["expected_len"].agg(["count", "min", "max"])
    print(f"{args.path}: valid, {len(frame)} examples")
    print(counts.to_string())


def _gate_files(path: str) -> list:
    from pathlib import Path

    root = Path(path)
    if (root / "gates.json").exists():
        return [root / "gates.json"]
    files = sorted(root.glob("**/report/ckpt=*/gates.json")) or sorted(root.glob("ckpt=*/gates.json"))
    if not files:
        from .errors import MMGateError

        raise MMGateError(f"{path}: no gates.json found (looked for report/ckpt=*/gates.json). Run the workflow's "
                          "`report` rule first, or point at results/ or results/report/ckpt=<name>/.")
    return files


def _inspect(args: argparse.Namespace) -> None:
    import json

    summaries = []
    for path in _gate_files(args.path):
        report = json.loads(path.read_text())
        failures = {}
        for gate in report["gates"]:
            for task, values in gate["values"].items():
                if isinstance(values, dict) and values.get("failures_by_reason"):
                    failures[f"{gate['gate']} {task}"] = values["failures_by_reason"]
        summaries.append({
            "checkpoint": report["checkpoint"], "overall": report["overall"], "report": str(path.with_name("report.html")),
            "gates": {g["gate"]: g["verdict"] for g in report["gates"]},
            "samples": {task: v.get("n") for g in report["gates"] if g["gate"] in ("P0.2", "P0.4", "P1.2")
                        for task, v in g["values"].items() if isinstance(v, dict)},
            "top_failure_reasons": failures,
            "fixes": {g["gate"]: g["fix"] for g in report["gates"] if g.get("fix")},
            "evidence": {g["gate"]: g["evidence"] for g in report["gates"] if g["verdict"] in ("FAIL", "WARN")},
        })
    if args.json:
        print(json.dumps(summaries, indent=1))
        return
    gates = ["P0.1", "P0.2", "P0.3", "P0.4", "P1.1", "P1.2", "P1.3"]
    print(f"{'checkpoint':<20} " + " ".join(f"{g:<5}" for g in gates) + "  overall")
    for s in summaries:
        print(f"{s['checkpoint']:<20} " + " ".join(f"{s['gates'].get(g, '-'):<5}" for g in gates) + f"  {s['overall']}")
    for s in summaries:
        if s["fixes"] or s["top_failure_reasons"]:
            print(f"\n{s['checkpoint']}: samples {s['samples']}")
            for gate, fix in s["fixes"].items():
                print(f"  {gate} FAIL: {fix}")
                for where in s["evidence"].get(gate, []):
                    print(f"      look at {where}")
            for where, reasons in s["top_failure_reasons"].items():
                print(f"  {where} failures: {reasons}")
            print(f"  report: {s['report']}")


def _check(args: argparse.Namespace) -> int:
    import json

    status = 0
    for path in _gate_files(args.path):
        report = json.loads(path.read_text())
        p0 = {g["gate"]: g["verdict"] for g in report["gates"] if g["gate"].startswith("P0")}
        blocking = {"FAIL", "SKIP"} | ({"WARN"} if args.strict else set())
        bad = {g: v for g, v in p0.items() if v in blocking}
        print(f"{report['checkpoint']}: {'FAIL' if bad else 'PASS'} (P0: {p0})")
        status |= bool(bad)
    return 1 if status else 0


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
    print(f"installed {target / 'config.yaml'}: edit slurm_account, slurm_partition and gpu_model, then run "
          f"`snakemake --profile {args.name}`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the offline demo models and data")
    demo.add_argument("--out", default="resources/demo")
    demo.add_argument("--golden-per-task", type=int, default=256)
    demo.add_argument("--train-steps", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=2)
    demo.set_defaults(func=_demo)
    ts = sub.add_parser("token-space", help="validate token_space.json and print its hash")
    ts.add_argument("path")
    ts.set_defaults(func=_token_space)
    golden = sub.add_parser("golden", help="validate a golden set against a token space")
    golden.add_argument("path")
    golden.add_argument("--token-space", required=True)
    golden.set_defaults(func=_golden)
    inspect = sub.add_parser("inspect", help="summarise a results tree or one checkpoint's report")
    inspect.add_argument("path", help="results/ or results/report/ckpt=<name>/")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(func=_inspect)
    check = sub.add_parser("check", help="exit 1 unless every P0 gate passes (for training pipelines)")
    check.add_argument("path", help="results/ or results/report/ckpt=<name>/")
    check.add_argument("--strict", action="store_true", help="count WARN (e.g. N < 256) as failing")
    check.set_defaults(func=_check)
    install = sub.add_parser("install-profile", help="copy a Snakemake profile (default: slurm) to ~/.config/snakemake")
    install.add_argument("name", nargs="?", default="slurm")
    install.add_argument("--dest", default="~/.config/snakemake")
    install.add_argument("--force", action="store_true")
    install.set_defaults(func=_install_profile)
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        if isinstance(result, int):
            return result
    except MMGateError as err:
        print(f"mmgate: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
