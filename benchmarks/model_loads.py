"""One checkpoint's GPU work (generate, ablate, decode) as one job per shard vs blocks of shards.

Runs the real workflow (`snakemake --cores N`, up to the report) twice on the built demo's `good`
checkpoint, each in a fresh working directory: `sharding.shards_per_job: 1` (a job, and a model load, per shard) and a
larger value (one `generate_block_NNN` or `ablate_block_NNN` job loads the model once for the
shards of its block, one `decode_block_NNN` builds each decoder once). Prints per setting: model-running jobs, wall
time of the whole run (the CPU-only jobs too: fingerprints, summaries, report), and from the
`timing` each shard's parquet records, the summed model-load and work seconds; the rest is mostly
process start and imports (Python, torch, transformers) of each job.

Needs the built demo (`make demo`, or resources/demo from it). On a cluster the load part is what
grows: a 7B checkpoint read from shared storage takes minutes, once per job.

    python benchmarks/model_loads.py [--per-task 32] [--per-shard 16] [--block 16] [--cores 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _machine import machine_line

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmgate.blocks import job_timing  # noqa: E402
from mmgate.stages import SHARDED, STAGES  # noqa: E402
from mmgate.io import read_parquet, write_parquet  # noqa: E402

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
DEMO = REPO / "resources" / "demo"


def run(workdir: Path, per_task: int, per_shard: int, per_job: int, cores: int) -> dict[str, float]:
    golden = read_parquet(DEMO / "golden.parquet").sort_values("sample_id", kind="stable")
    write_parquet(golden.groupby("task").head(per_task).reset_index(drop=True), workdir / "golden.parquet", {})
    bundled = (REPO / "config" / "config.yaml").read_text()
    config = yaml.safe_load(yaml.safe_dump(yaml.safe_load(bundled)).replace("resources/demo", str(DEMO)))
    config.update({"golden_set": str(workdir / "golden.parquet"), "checkpoints": {"good": str(DEMO / "checkpoints" / "good")}})
    config["demo"]["build"] = False
    config["gates"]["min_n"] = per_task
    config["sharding"] = {"samples_per_shard": per_shard, "shards_per_job": per_job}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    base = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
            str(workdir / "config.yaml"), "--cores", str(cores)]
    check = subprocess.run([*base, "results/token_space/ckpt=good/check.parquet"], capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(check.stdout[-3000:] + check.stderr[-3000:])
    targets = ["results/report/ckpt=good/gates.json"]  # every stage of the checkpoint, as a run makes it
    began = time.perf_counter()
    proc = subprocess.run([*base, *targets], capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    results = workdir / "results"
    files = [f for stage in SHARDED for f in sorted(results.glob(f"{STAGES[stage].folder}/**/*.parquet"))]
    rows = job_timing(files)
    jobs = list((workdir / "logs" / "blocks").rglob("*.log"))  # the model-running (block) jobs
    # the shards of one job share its one load: each records it and how many shards shared it
    return {"jobs": len(jobs), "shards": len(rows), "wall": wall,
            "load": sum(row["load_seconds"] / row["shards_in_job"] for row in rows),
            "work": sum(row["work_seconds"] for row in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-task", type=int, default=32, help="golden examples per task")
    parser.add_argument("--per-shard", type=int, default=16, help="sharding.samples_per_shard")
    parser.add_argument("--block", type=int, default=16, help="sharding.shards_per_job of the block run")
    parser.add_argument("--cores", type=int, default=2)
    opts = parser.parse_args()
    if not (DEMO / "golden.parquet").exists():
        raise SystemExit(f"{DEMO} is not built: run `make demo` first")
    print(machine_line(f"snakemake --cores {opts.cores}; demo `good`, {opts.per_task} examples per task, "
                       f"{opts.per_shard} per shard"))
    found = {}
    for per_job in (1, opts.block):
        with tempfile.TemporaryDirectory(prefix=f"mmgate-loads-{per_job}-") as tmp:
            found[per_job] = run(Path(tmp), opts.per_task, opts.per_shard, per_job, opts.cores)
    print(f"\n  {'shards_per_job':>14} {'model jobs':>10} {'shards':>7} {'wall s':>8} {'load s':>8} {'work s':>8} "
          f"{'outside work':>13}")
    for per_job, row in found.items():
        outside = 1 - row["work"] / row["wall"] if row["wall"] else float("nan")
        print(f"  {per_job:>14} {row['jobs']:>10} {row['shards']:>7} {row['wall']:>8.1f} {row['load']:>8.1f} "
              f"{row['work']:>8.1f} {outside:>12.0%}")
    one, block = found[1], found[opts.block]
    print(f"\n  blocks of {opts.block}: x{one['wall'] / block['wall']:.2f} faster end to end, "
          f"{one['jobs']} -> {block['jobs']} model-loading jobs, model load {one['load']:.1f} -> {block['load']:.1f} s")


if __name__ == "__main__":
    main()
