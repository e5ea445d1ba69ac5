"""DAG build time: wall time of `snakemake -n` at 10, 50 and 200 checkpoints.

Builds a synthetic layout in a temporary folder: N tiny fake checkpoint folders (a completion marker
and nothing else) found through `checkpoint_glob`, the demo's token space and golden set (256
examples per task: 2 shards per task at 128 per shard), and each checkpoint's P0.1 table already
written as passed, so the dry run plans every job of every checkpoint, not the token-space checks
alone. Two columns: `all planned` (nothing verified yet: every job runs) and `one new` (every
output but the newest checkpoint's exists, made empty in the order the jobs make them: the run a
user starts after each new checkpoint). Needs the built demo (`make demo`, or resources/demo).

`--before REV` also times the workflow as it was at git revision REV (extracted with `git archive`
into a temporary folder, nothing in this checkout changes), on the same layout, side by side.

The SLURM executor plugin runs `scontrol show config` when Snakemake imports it, on every
invocation; where SLURM is installed but its controller is down that call waits about 9 s. The
benchmark times that call once and puts a stub `scontrol` first on PATH for the dry runs, so the
numbers are the workflow's own (`--slurm-probe` keeps the real one).

    python benchmarks/dag_build.py [--counts 10 50 200] [--before 2a6c947] [--repeat 1] [--slurm-probe]
                                   [--shards-per-job 16]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from _machine import machine_line

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def layout(root: Path, n: int, shards_per_job: int | None = None) -> Path:
    """N fake checkpoints, their passed P0.1 tables and a config; returns the config path."""
    demo = REPO / "resources" / "demo"
    if not (demo / "golden.parquet").exists():
        sys.exit(f"{demo} is not built: run `make demo` (or the demo rule) first")
    for i in range(n):
        ckpt = root / "ckpts" / f"checkpoint-{(i + 1) * 100}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "COMPLETE").write_text("")
        check = root / "run" / "results" / "token_space" / f"ckpt={ckpt.name}" / "check.parquet"
        check.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"artifact": ["checkpoint"], "match": [True]}).to_parquet(check)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({
        "token_space": str(demo / "token_space.json"), "golden_set": str(demo / "golden.parquet"),
        "stage2": {"shards": [str(p) for p in sorted((demo / "stage2").glob("*.parquet"))]},
        "stage3_init": str(demo / "stage3_init"), "checkpoints": {},
        "checkpoint_glob": str(root / "ckpts" / "*"),
    })
    config["model"]["base"] = str(demo / "stage3_init")
    config["demo"]["build"] = False
    if shards_per_job is not None:  # else the bundled config's
        config["sharding"]["shards_per_job"] = shards_per_job
    path = root / f"config-{n}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(repo: Path, config: Path, workdir: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, planned jobs, what it printed) of one `snakemake -n`."""
    cmd = [str(SNAKEMAKE), "-n", "--snakefile", str(repo / "Snakefile"), "-d", str(workdir), "--configfile", str(config)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", proc.stdout, re.M)
    return seconds, int(total.group(1)) if total else -1, proc.stdout


def fake_outputs_but_newest(stdout: str, workdir: Path, newest: str) -> None:
    """Every planned output except `newest`'s, as empty files (folders for directory outputs), with
    mtimes in the order the jobs make them, so that the next dry run plans only `newest` and the trend."""
    order = ("generate", "ablate", "decode", "ablation_summary", "fingerprint", "report", "trend")
    now = time.time()
    for rule, outputs in re.findall(r"^(?:local)?rule (\w+):\n(?:    input: .*\n)?    output: (.*)$", stdout, re.M):
        rank = next((i for i, prefix in enumerate(order) if rule.startswith(prefix)), None)
        if rank is None:
            continue
        for output in outputs.split(", "):
            if f"ckpt={newest}/" in output:
                continue
            path = workdir / output
            path.parent.mkdir(parents=True, exist_ok=True)
            if output.endswith((".parquet", ".json", ".html")):
                path.touch()
            else:  # a decode shard's folder of files
                path.mkdir(exist_ok=True)
            os.utime(path, (now + rank, now + rank))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--before", help="git revision to time as well (e.g. the commit before the change)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per point; the fastest is shown")
    parser.add_argument("--shards-per-job", type=int, help="sharding.shards_per_job of the layout (default: config.yaml's)")
    parser.add_argument("--slurm-probe", action="store_true", help="keep the SLURM plugin's scontrol call in the times")
    args = parser.parse_args()
    version = subprocess.run([str(SNAKEMAKE), "--version"], capture_output=True, text=True).stdout.strip()
    print(machine_line(f"snakemake {version}"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ)
        if shutil.which("scontrol") and not args.slurm_probe:
            start = time.perf_counter()
            try:
                subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=10)
            except subprocess.TimeoutExpired:
                pass
            print(f"SLURM plugin probe (`scontrol show config`, run by every snakemake call): "
                  f"{time.perf_counter() - start:.1f} s here, left out of the times below (stub scontrol)")
            (tmp / "bin").mkdir()
            (tmp / "bin" / "scontrol").write_text("#!/bin/sh\nexit 1\n")
            (tmp / "bin" / "scontrol").chmod(0o755)
            env["PATH"] = f"{tmp / 'bin'}{os.pathsep}{env['PATH']}"
        trees = {"now": REPO}
        if args.before:
            old = tmp / "before"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees = {f"before ({args.before})": old, "now": REPO}
        header = "".join(f"{name + ' ' + state + ' s':>30}" for name in trees for state in ("all planned", "one new"))
        print(f"{'checkpoints':>11} {'jobs (all / one new)':>21}{header}"
              + (f"{'before/now':>12}" if len(trees) > 1 else ""))
        for n in args.counts:
            root = tmp / f"layout-{n}"
            config = layout(root, n, args.shards_per_job)
            newest = f"checkpoint-{n * 100}"
            times, jobs = {}, {}
            for number, (name, tree) in enumerate(trees.items()):
                workdir = root / f"run-{number}"
                shutil.copytree(root / "run", workdir)  # the P0.1 tables
                for state in ("all planned", "one new"):
                    runs = [dry_run(tree, config, workdir, env) for _ in range(args.repeat)]
                    times[name, state] = min(r[0] for r in runs)
                    jobs.setdefault(state, set()).update(r[1] for r in runs)
                    if state == "all planned":
                        fake_outputs_but_newest(runs[0][2], workdir, newest)
            cells = "".join(f"{times[name, state]:30.2f}" for name in trees for state in ("all planned", "one new"))
            first = next(iter(trees))
            ratio = f"{times[first, 'all planned'] / times['now', 'all planned']:11.1f}x" if len(trees) > 1 else ""
            counts = " / ".join("/".join(map(str, sorted(jobs[state]))) for state in ("all planned", "one new"))
            print(f"{n:11d} {counts:>21}{cells}{ratio}")


if __name__ == "__main__":
    main()
