import math
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The library lives in src/; parsing imports it from this checkout (scripts do the same
# through workflow/scripts/_srcpath.py), so an installed mmgate is not required.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from mmgate.checkpoints import discover_checkpoints
from mmgate.config import expand_paths, validate_config
from mmgate.demo import DEMO_FILES

_validated = validate_config(config, source="config (config/config.yaml + --config)")
config.clear()
config.update(_validated)

ENV = "../../envs/mmgate.yaml"
WRITE_TASKS = ["t2a", "t2i"]
READ_TASKS = ["a2t", "i2t"]
MODES = ["free", "constrained"]
DEMO = config["demo"]["build"]
DEMO_DIR = config["demo"]["dir"]
MARKER = config["completion_marker"]


wildcard_constraints:
    ckpt="[A-Za-z0-9._-]+",
    task="t2a|t2i|a2t|i2t",
    write_task="t2a|t2i",
    mode="free|constrained",
    shard="[0-9]{3}",


def _made_by_demo(path):
    return DEMO and Path(path).resolve().is_relative_to(Path(DEMO_DIR).resolve())


def _discover():
    found = discover_checkpoints(
        config["checkpoints"], config.get("checkpoint_glob"), MARKER
    )
    ckpts = dict(found.checkpoints)
    for reason in found.skipped:
        name = reason.split(":", 1)[0]
        path = config["checkpoints"].get(name)
        if path and _made_by_demo(path):
            ckpts[name] = path  # the demo rule writes it, marker last
        else:
            print(f"mmgate: skipping checkpoint {reason}", file=sys.stderr)
    return dict(sorted(ckpts.items()))


CHECKPOINTS = _discover()
STAGE2_SHARDS = expand_paths(config["stage2"].get("shards"))


def ckpt_dir(wildcards):
    return CHECKPOINTS[wildcards.ckpt]


def ckpt_marker(wildcards):
    """The completion marker: a source file for real checkpoints, the demo rule's output for the demo."""
    return str(Path(CHECKPOINTS[wildcards.ckpt]) / (MARKER or "adapter_config.json"))


def stage3_marker():
    init = config.get("stage3_init")
    return [str(Path(init) / MARKER)] if init and MARKER else []


def n_samples(task):
    """Golden-set rows per task, read at parse time (shard counts are fixed before any job runs)."""
    golden = Path(config["golden_set"])
    if golden.exists():
        from mmgate.golden import read_golden

        return int((read_golden(golden)["task"] == task).sum())
    if DEMO:
        return config["demo"]["golden_per_task"]
    raise WorkflowError(
        f"golden_set {golden} does not exist; set `golden_set` in config/config.yaml"
    )


def shards(task):
    per_shard = config["sharding"]["samples_per_shard"]
    return [f"{i:03d}" for i in range(max(1, math.ceil(n_samples(task) / per_shard)))]


def token_space_targets():
    return expand("results/token_space/ckpt={ckpt}/check.parquet", ckpt=CHECKPOINTS)


def all_targets():
    return expand("results/report/ckpt={ckpt}/gates.json", ckpt=CHECKPOINTS) + [
        "results/report/trend.parquet"
    ]


def model_base(wildcards):
    return config["model"].get("base")


def stage3_dir(wildcards):
    return config.get("stage3_init")


def report_inputs(wildcards):
    ckpt = wildcards.ckpt
    inputs = {"check": f"results/token_space/ckpt={ckpt}/check.parquet"}
    for task in WRITE_TASKS:
        for mode in MODES:
            inputs[f"generate_{task}_{mode}"] = expand(
                f"results/generate/ckpt={ckpt}/task={task}/mode={mode}/part-{{shard}}.parquet",
                shard=shards(task),
            )
        inputs[f"fingerprint_{task}"] = (
            f"results/fingerprint/ckpt={ckpt}/task={task}/collapse.parquet"
        )
    for task in WRITE_TASKS + READ_TASKS:
        inputs[f"ablate_{task}"] = (
            f"results/ablate/ckpt={ckpt}/task={task}/summary.parquet"
        )
    return inputs
