import dataclasses
import functools
import math
import sys
import time
from types import SimpleNamespace
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The library lives in src/; parsing imports it from this checkout (scripts do the same
# through workflow/scripts/_srcpath.py), so an installed mmgate is not required.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from mmgate.blocks import ablate_units, blocks, decode_units, generate_units
from mmgate.checkpoints import discover_checkpoints
from mmgate.cli import end_of_run
from mmgate.config import expand_paths, read_yaml, validate_config
from mmgate.demo import DEMO_FILES
from mmgate.zoo import zoo_files
from mmgate.io import read_parquet
from mmgate.report import verdict_config
from mmgate.tables import report_inputs as _report_inputs
from mmgate.runend import when_nothing_to_do
from mmgate.stale import conform_earlier_files, move_stale
from mmgate.stages import PAGES, STAGES
from mmgate.scripting import pin_library, start_run
from mmgate.tasks import TASKS, WRITE_TASKS

pin_library(
    Path(workflow.basedir) / "src"
)  # jobs import this library too, not an installed one
start_run()  # a job's retry in this run skips an mmgate error its first attempt already hit

# A user's --configfile replaces the bundled demo config (Snakemake would merge the two, and a
# config naming only `mine` would also plan the demo's checkpoints and inherit its decoders).
DEMO_CONFIG = Path(workflow.basedir) / "config" / "config.yaml"
CONFIG_FILES = [str(f) for f in workflow.overwrite_configfiles] or [str(DEMO_CONFIG)]
for _file in CONFIG_FILES:
    read_yaml(_file)  # a key given twice is an error (YAML would keep the last)
if not workflow.overwrite_configfiles:
    workflow.configfile(str(DEMO_CONFIG))
_validated = validate_config(config, source=" + ".join(CONFIG_FILES) + " (+ --config)")
config.clear()
config.update(_validated)

ENV = "../../envs/mmgate.yaml"
DEMO = config["demo"]["build"]
DEMO_DIR = config["demo"]["dir"]
MARKER = config["completion_marker"]


wildcard_constraints:
    ckpt="[A-Za-z0-9._-]+",


def _made_by_demo(path):
    return DEMO and Path(path).resolve().is_relative_to(Path(DEMO_DIR).resolve())


def _discover():
    found = discover_checkpoints(
        config["checkpoints"], config.get("checkpoint_glob"), MARKER
    )
    ckpts = dict(found.checkpoints)
    missing, skipped = [], []
    for name, path, reason in found.skipped:
        if name in config["checkpoints"] and _made_by_demo(path):
            ckpts[name] = path  # the demo rule writes it, marker last
        elif reason == "unusable path":
            line = (
                f"{name}: {path} holds {{, }}, < or >, which Snakemake reads as wildcards or path variables: "
                "rename the folder, or link it under a plain name and list the link; the other checkpoints go on"
            )
            print(
                f"mmgate: not verified: {line}", file=sys.stderr
            )  # now: a dry run ends without onsuccess
            skipped.append(line)
        elif reason == "missing":
            missing.append(f"  - {name}: {path} (resolved to {Path(path).resolve()})")
        else:
            skipped.append(f"{name}: {path} has no completion marker {MARKER!r} yet")
    if missing:
        raise WorkflowError(
            "These checkpoints in `checkpoints:` do not exist:\n"
            + "\n".join(missing)
            + f"\nRelative paths resolve against the working directory ({Path.cwd()}): use absolute "
            "paths, or run snakemake from the folder they are relative to (or pass -d)."
        )
    if not ckpts:
        raise WorkflowError(
            "No complete checkpoint to verify: `checkpoints:` and `checkpoint_glob` "
            f"({config.get('checkpoint_glob')!r}) name none"
            + (
                " that has its completion marker yet:\n  - " + "\n  - ".join(skipped)
                if skipped
                else "."
            )
        )
    return dict(sorted(ckpts.items())), skipped


CHECKPOINTS, SKIPPED = _discover()


RUN_STARTED = time.time()


def print_verdicts(failed):
    """The last thing a run prints: this run's verdicts and where the reports are. It also records
    which checkpoints this run's config verifies, so `mmgate inspect/check results` judge those.
    """
    from mmgate.cli import record_plan

    record_plan("results", CHECKPOINTS, CONFIG_FILES)
    print(end_of_run(CHECKPOINTS, "results", RUN_STARTED, failed), file=sys.stderr)


def report_skipped():
    """Said at the end of every run: checkpoints found but not complete yet are not verified."""
    for line in SKIPPED:
        print(f"mmgate: not verified yet: {line}", file=sys.stderr)


def end_successful_run():
    """onsuccess, and the end of a run with nothing to do (which calls no onsuccess)."""
    say = lambda line: print(line, file=sys.stderr)
    planned = planned_shards()
    move_stale("results", CHECKPOINTS, planned, log=say)
    conform_earlier_files("results", CHECKPOINTS, planned, log=say)
    report_skipped()
    print_verdicts(failed=False)


def stage_path(stage):
    """A stage's file pattern (mmgate.stages) with its keys as wildcards."""
    return STAGES[stage].wildcards()


def per_task_path(stage, **fixed):
    """A stage's pattern for `per_task`: {ckpt} stays a wildcard, {task} (and {shard}) are expanded,
    other keys `fixed` (mode="constrained")."""
    return STAGES[stage].wildcards(ckpt="{{ckpt}}", **fixed)


def per_task_media(stage):
    """A stage's media folders for `per_task`: {ckpt} stays a wildcard, {task} and {shard} are expanded."""
    return STAGES[stage].media_path(ckpt="{{ckpt}}", task="{task}", shard="{shard}")


def page(name, **keys):
    """A page's path (mmgate.stages.PAGES): a report's gates.json or HTML, the trend and verdicts pages."""
    return PAGES[name].format(**{"ckpt": "{ckpt}", **keys})


def planned_shards():
    """The shard ids of this run's plan by sample set and task (mmgate.stale keeps the rest apart)."""
    return {
        "generation": {
            t: set(shards(t, generation=True)) for t in WRITE_TASKS if n_samples(t)
        },
        "golden": {t: set(shards(t)) for t in TASKS if n_samples(t)},
    }


STAGE2_SHARDS = expand_paths(config["stage2"].get("shards"))


def _check_inputs():
    """Everything that can be checked before the first job (Snakemake deletes a job's old outputs
    before running it, so an error found inside a job costs cached work)."""
    if not Path(config["token_space"]).exists():
        return  # the demo rule builds it; elsewhere the token_space job names it
    from mmgate.decoders import decoder_config_problems
    from mmgate.tokenspace import TokenSpace

    problems = decoder_config_problems(
        config.get("decoders", {}),
        TokenSpace.load(config["token_space"], config["task_modalities"]),
    )
    if problems:
        raise WorkflowError(
            "The decoders section of the config does not fit the token space:\n  - "
            + "\n  - ".join(problems)
        )
    golden = Path(config["golden_set"])
    if golden.exists():
        counts = _golden_counts(
            str(golden), golden.stat().st_mtime
        )  # validates every row
        _clamp_samples_per_task(counts)
        untemplated = sorted(t for t in counts if t not in config["templates"])
        if untemplated:
            raise WorkflowError(
                f"golden_set {golden} has {', '.join(f'{counts[t]} {t}' for t in untemplated)} rows but "
                f"`templates` has no {' or '.join(untemplated)}: add the prompt format these tasks were trained "
                "with under `templates:`, or drop their rows from the golden set."
            )


def _clamp_samples_per_task(counts):
    """generation.samples_per_task at or above every write task's rows generates them all, as null does:
    it changes no output, so it becomes null and reruns nothing (with a note saying so).
    """
    wanted = config["generation"].get("samples_per_task")
    most = max((counts.get(task, 0) for task in WRITE_TASKS), default=0)
    if wanted is not None and wanted >= most:
        print(
            f"mmgate: generation.samples_per_task = {wanted} is at least every write task's golden rows "
            f"({most}): every row is generated, as with null, so it changes no output and reruns nothing",
            file=sys.stderr,
        )
        config["generation"]["samples_per_task"] = None


def ckpt_dir(wildcards):
    return CHECKPOINTS[wildcards.ckpt]


def ckpt_identity(wildcards):
    """A param of every job that reads the model: the checkpoint's content (mmgate.checkpoints.content_identity),
    so a checkpoint saved again in place is verified again (its marker alone may not change). The demo's
    checkpoints are outputs of this workflow, not there yet when the DAG is first built: the rule that
    builds them reruns what reads them, so they need no identity.
    """
    path = CHECKPOINTS[wildcards.ckpt]
    if _made_by_demo(path):
        return None
    return _identity(path, config["model"].get("base"))


@functools.lru_cache(maxsize=None)
def _identity(ckpt, base):
    from mmgate.checkpoints import content_identity

    return content_identity(ckpt, base)


def ckpt_marker(wildcards):
    """The completion marker: a source file for real checkpoints, the demo rule's output for the demo."""
    return str(Path(CHECKPOINTS[wildcards.ckpt]) / (MARKER or "adapter_config.json"))


def stage3_marker():
    init = config.get("stage3_init")
    return [str(Path(init) / MARKER)] if init and MARKER else []


@functools.lru_cache
def _golden_counts(path, mtime):
    """Rows per task of the golden set, validated once per parse: a bad row stops the run before
    any job starts (and so before Snakemake deletes any job's old outputs)."""
    from mmgate.golden import load_golden, read_golden
    from mmgate.tokenspace import TokenSpace

    if Path(config["token_space"]).exists():
        golden = load_golden(
            path, TokenSpace.load(config["token_space"], config["task_modalities"])
        )
    else:  # the demo builds both; its rule validates them
        golden = read_golden(path)
    if golden.empty:
        raise WorkflowError(
            f"golden_set {path} has no rows: every gate would be SKIP. Point `golden_set` at your examples."
        )
    return golden["task"].value_counts().to_dict()


def n_samples(task):
    """Golden-set rows per task, read once per parse (shard counts are fixed before any job runs)."""
    golden = Path(config["golden_set"])
    if golden.exists():
        return int(_golden_counts(str(golden), golden.stat().st_mtime).get(task, 0))
    if DEMO:
        return config["demo"]["golden_per_task"]
    raise WorkflowError(
        f"golden_set {golden} does not exist; set `golden_set` in config/config.yaml"
    )


def n_generated(task):
    """Rows per write task that generation uses: all, or `generation.samples_per_task` of them."""
    wanted = config["generation"]["samples_per_task"]
    return n_samples(task) if wanted is None else min(n_samples(task), wanted)


def shards(task, generation=False):
    """Shard ids of a task: of its generation subset for generate/decode/fingerprint, else of every row."""
    per_shard = config["sharding"]["samples_per_shard"]
    n = n_generated(task) if generation else n_samples(task)
    return [f"{i:03d}" for i in range(max(1, math.ceil(n / per_shard)))]


_check_inputs()


# ------------------------------------------------------------ several shards per GPU job
# Every GPU stage (generate, ablate, decode) runs in blocks of up to `sharding.shards_per_job` of a
# checkpoint's shards, one rule per block (<stage>_block_NNN); with 1, each block holds one shard.

SHARDS_PER_JOB = config["sharding"]["shards_per_job"]


def _tasks_shards(generation):
    return {task: shards(task, generation) for task in TASKS if n_samples(task)}


def per_task(tasks, generation=False, **patterns):
    """Named inputs or outputs `<name>_<task>` of a per-checkpoint job, for each of `tasks` with golden
    rows: a pattern with {shard} gives the task's shard files (of its generation subset when
    `generation`), one without gives one file. Fixed at parse time, like the shard counts.
    """
    named = {}
    for task in tasks:
        if not n_samples(task):
            continue
        for name, pattern in patterns.items():
            if "{shard}" in pattern:
                named[f"{name}_{task}"] = expand(
                    pattern, task=task, shard=shards(task, generation)
                )
            else:
                named[f"{name}_{task}"] = pattern.format(task=task)
    return named


def block_rules(stage):
    """The name and units of each block of `stage` (generate, ablate, decode): one rule per block,
    its outputs the shard files. The same blocks for every checkpoint."""
    generated = {t: s for t, s in _tasks_shards(True).items() if t in WRITE_TASKS}
    if stage == "generate":
        units = generate_units(generated)
    elif stage == "decode":
        units = decode_units(generated)
    else:
        units = ablate_units(_tasks_shards(False))
    return [
        (f"{stage}_block_{i:03d}", block)
        for i, block in enumerate(blocks(units, SHARDS_PER_JOB))
    ]


def block_outputs(units):
    """A block's outputs: its shards' files, whatever the block size (decode: table and media)."""
    outputs = []
    for unit in units:
        outputs.append(unit.output("{ckpt}"))
        if unit.media("{ckpt}"):
            outputs.append(directory(unit.media("{ckpt}")))
    return outputs


def block_inputs(units):
    """A decode block's inputs: the constrained generation shards it decodes."""
    return [
        STAGES["generate"].path(
            ckpt="{ckpt}", task=u.task, mode="constrained", shard=u.shard
        )
        for u in units
    ]


def block_threads(rule, threads):
    """Threads of a block rule: the profile's `set-threads` for `rule` (e.g. generate_block), else `threads`."""
    given = workflow.resource_settings.overwrite_threads.get(rule, threads)
    return getattr(given, "raw", given)


def block_resources(rule, units, minutes, **needs):
    """Resources of a block rule: `needs`, a runtime of `minutes` per shard (growing with each attempt),
    and what the profile's `set-resources` gives `rule` (e.g. generate_block) for every block.
    """
    given = workflow.resource_settings.overwrite_resources.get(rule, {})
    total = minutes * len(units)
    return {
        **needs,
        "runtime": lambda wildcards, attempt: total * attempt,
        **{name: getattr(value, "raw", value) for name, value in given.items()},
    }


# Params of the decode blocks (decode.smk); a changed setting reruns the work.
DECODE_PARAMS = dict(
    decoders=config["decoders"],
    task_modalities=config["task_modalities"],
    device=config["model"]["device"],
    samples_per_shard=config["sharding"]["samples_per_shard"],
    samples_per_task=config["generation"]["samples_per_task"],
)


def token_space_targets():
    return expand(stage_path("check"), ckpt=CHECKPOINTS)


def all_targets(wildcards=None):
    """Every file a reader opens, and every file each report rests on: Snakemake reruns a job for a
    missing *requested* file only, so a shard deleted after its report was written is remade only
    because it is requested here (its report then reruns on the new shard)."""
    reports = [
        *expand(
            [page("gates_json"), page("report_html"), stage_path("gates")],
            ckpt=CHECKPOINTS,
        ),
        stage_path("trend"),
        page("trend_html"),
        page("verdicts_html"),
    ]
    if wildcards is None:
        return reports
    rested_on = []
    for ckpt in CHECKPOINTS:
        if not Path(STAGES["check"].path(ckpt=ckpt)).exists():
            continue  # not checked yet: its report plans its work once P0.1 has run
        inputs = report_inputs(SimpleNamespace(ckpt=ckpt))
        rested_on += [
            f
            for name, files in inputs.items()
            if name not in ("golden", "training_log")
            for f in files
        ]
    return reports + rested_on


def model_base(wildcards):
    return config["model"].get("base")


def stage3_dir(wildcards):
    return config.get("stage3_init")


def p01_passed(ckpt):
    """Whether the checkpoint passed P0.1 (its check table exists once the Snakemake checkpoint ran)."""
    check = checkpoints.token_space.get(ckpt=ckpt).output[0]
    stat = Path(check).stat()
    return _check_passed(str(check), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=None)
def _check_passed(path, mtime_ns, size):
    """A check table read once per parse, not once per GPU job (a re-run check is a new key)."""
    return bool(read_parquet(path)["match"].all())


def p01_gate(wildcards):
    """Runs P0.1 first. Its table is a gate, not data: once passed it is no input (re-running the check
    with the same result reruns no GPU job); after a failure it is, and the job refuses to run.
    """
    if p01_passed(wildcards.ckpt):
        return []
    return checkpoints.token_space.get(ckpt=wildcards.ckpt).output


def report_inputs(wildcards):
    """Exactly the files the report reads; after a P0.1 failure, only the token-space check."""
    by_task = {task: shards(task) if n_samples(task) else [] for task in TASKS}
    generated = {
        task: shards(task, generation=True) if n_samples(task) else [] for task in TASKS
    }
    inputs = _report_inputs(
        wildcards.ckpt, by_task, p01_passed(wildcards.ckpt), generation_shards=generated
    )
    inputs["golden"] = [config["golden_set"]]
    from mmgate.training import training_log_path

    log = training_log_path(
        config["report"]["training_log"], CHECKPOINTS[wildcards.ckpt]
    )
    if (
        log is not None and log.exists()
    ):  # a gate reads it: an edited log reruns the report
        inputs["training_log"] = [str(log)]
    return inputs
