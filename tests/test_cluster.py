"""Cluster execution: a real SLURM run, incremental reruns, preemption and faults.

The SLURM test needs a running cluster (`.ci/run` starts the single-node one of
../shared/slurm/local-slurm.sh with fake GPUs); without one it is skipped with the reason.
The other tests use dry runs and local runs, asserting on the jobs Snakemake schedules.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, CONFIG, REPO, browsing_problems, golden_subset, snakemake

from mmgate.io import read_parquet
from mmgate.stages import STAGES

SLURM_PROFILE = REPO / "profiles" / "slurm-local"


def scheduled(output: str) -> dict[str, int]:
    """Jobs per rule from a dry run's job stats ({} when there is nothing to do)."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    counts.pop("total", None)
    return counts


def scheduled_outputs(output: str) -> list[str]:
    return re.findall(r"^\s+output: (.+)$", output, re.M)


GPU_STAGES = ("generate", "ablate", "decode")


def block_jobs(counts, *stages: str) -> dict[str, int]:
    """The jobs (per rule) of the block rules `<stage>_block_NNN` of `stages` (default: every GPU stage)
    among `counts`, a dict of jobs per rule or a set of rule names (then 1 each)."""
    counts = counts if isinstance(counts, dict) else dict.fromkeys(counts, 1)
    pattern = re.compile(rf"(?:{'|'.join(stages or GPU_STAGES)})_block_\d{{3}}")
    return {rule: n for rule, n in counts.items() if pattern.fullmatch(rule)}


PER_TASK, PER_SHARD = 32, 16  # small golden set, two shards per task: scheduling is what these tests are about


def data_config(tmp_path: Path, demo: Path, per_task: int | None = PER_TASK, **changes) -> Path:
    """The demo config pointing at a copy of the built demo data, with the demo rule off, on the
    first `per_task` golden examples per task (`gates.min_n` set to match); None keeps all 256."""
    data = tmp_path / "data"
    if not data.exists():
        shutil.copytree(demo / "resources" / "demo", data, ignore=shutil.ignore_patterns("zoo"))
    if per_task:  # also when the caller copied the data itself (the first `per_task` of a subset are the subset)
        golden_subset(data / "golden.parquet", data / "golden.parquet", per_task)
    config = yaml.safe_load(yaml.safe_dump(yaml.safe_load(CONFIG.read_text())).replace("resources/demo", str(data)))
    config["demo"]["build"] = False
    if per_task:
        config["gates"]["min_n"] = per_task
        config["sharding"]["samples_per_shard"] = PER_SHARD
    config["sharding"]["shards_per_job"] = 1  # a block (a job) per shard: these tests are about the shard jobs
    config.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def slurm_running() -> str | None:
    if not shutil.which("sinfo"):
        return "no SLURM here (sinfo not found); .ci/run starts one with ../shared/slurm/local-slurm.sh"
    proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"SLURM is installed but not running (sinfo: {proc.stderr.strip() or 'no partitions'})"
    return None


@pytest.mark.slow
def test_demo_through_real_sbatch_jobs_requests_gpus_and_matches_a_local_run(demo_workdir, tmp_path):
    reason = slurm_running()
    if reason:
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    # the built demo data, `good` on 16 examples per task: every stage runs as a SLURM job (verdicts
    # are the fault zoo's business; this is about jobs, their resources and their outputs), the GPU
    # shards in a block of 8 (sharding.shards_per_job), as a cluster user loading a large model would
    good_only = {"checkpoints": {"good": str(tmp_path / "data/checkpoints/good")}}
    config = data_config(tmp_path, demo_workdir, per_task=PER_SHARD, **good_only,
                         sharding={"samples_per_shard": PER_SHARD, "shards_per_job": 8})
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    # the plugin's status polling hangs on some failures; SIGINT (not SIGTERM) stops it
    cmd = ["timeout", "-s", "INT", "-k", "30", "2400", str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
           "--profile", str(SLURM_PROFILE), "-d", str(tmp_path), "--configfile", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = subprocess.run(["sacct", "-X", "-P", "-n", "-S", started, "--format=JobID,ReqTRES,State,SubmitLine%2000"],
                          capture_output=True, text=True, check=True).stdout.strip().splitlines()
    by_rule: dict[str, list[tuple[str, str, str]]] = {}
    for line in jobs:
        job_id, tres, state, submit = line.split("|", 3)
        rule = re.search(r"--comment rule_(\w+?)(?:_wildcards_\S*)?(?:\s|$)", submit)
        by_rule.setdefault(rule.group(1) if rule else "?", []).append((tres, state, submit))
    blocks = ("generate_block_000", "ablate_block_000", "decode_block_000")
    assert {"token_space_stage2", "token_space", *blocks, "fingerprint", "ablation_summary",
            "report", "trend"} <= set(by_rule), jobs
    # 4 generation shards (2 tasks x 2 modes) and 4 ablation shards (4 tasks), one shard each: a job and one model
    # load per stage, no other block; the profile's block entries (gpu_model) reach them
    assert all(len(by_rule[rule]) == 1 for rule in blocks), jobs
    assert set(block_jobs(set(by_rule))) == set(blocks), jobs
    for rule in blocks:
        for tres, state, submit in by_rule[rule]:
            assert "gres/gpu=1" in tres and "--gpus=fake:1" in submit and state == "COMPLETED", (tres, submit)
    assert "for 4 shard(s)" in (tmp_path / "logs/blocks/good/generate_block_000.log").read_text()
    for tres, state, submit in by_rule["token_space"]:
        assert "gres/gpu" not in tres and "-A mmgate" in submit and state == "COMPLETED"
    good = json.loads((tmp_path / "results/report/ckpt=good/gates.json").read_text())
    assert all(g["verdict"] in ("PASS", "WARN") for g in good["gates"] if g["gate"].startswith("P0")), good["gates"]
    # the same tokens and losses as a local run of the same config, a block (a job) per shard
    targets = ["results/generate/ckpt=good/task=t2a/mode=constrained/part-000.parquet",
               "results/ablate/ckpt=good/task=a2t/part-000.parquet"]
    local = tmp_path / "local"
    config = data_config(tmp_path, demo_workdir, per_task=PER_SHARD, **good_only)
    snakemake(*targets, "--cores", "2", "-d", str(local), "--configfile", str(config))
    for target in targets:
        ours, theirs = read_parquet(tmp_path / target), read_parquet(local / target)
        if "generated_ids" in ours:
            assert ours["generated_ids"].map(tuple).tolist() == theirs["generated_ids"].map(tuple).tolist()
        else:
            pd.testing.assert_series_equal(ours["loss"], theirs["loss"], rtol=1e-5)


@pytest.fixture(scope="module")
def complete_run(demo_workdir, tmp_path_factory):
    """A finished run of every stage over a checkpoint glob, in its own working directory."""
    workdir = tmp_path_factory.mktemp("incremental")
    data = workdir / "data"
    shutil.copytree(demo_workdir / "resources" / "demo", data, ignore=shutil.ignore_patterns("zoo"))
    (data / "runs").mkdir()
    shutil.copytree(data / "checkpoints" / "good", data / "runs" / "checkpoint-100")
    config = data_config(workdir, demo_workdir, checkpoints={}, checkpoint_glob=str(data / "runs" / "checkpoint-*"))
    snakemake("--cores", "2", "-d", str(workdir), "--configfile", str(config))
    return workdir, config, data


def slurm_rerun_triggers(repo: Path = REPO) -> list[str]:
    """The rerun triggers of the users' slurm profile (read from it, so that no cluster is needed)."""
    return yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())["rerun-triggers"]


def dry(workdir, config, *extra, slurm_triggers=False, snakefile=REPO / "Snakefile"):
    args = ["-n", "-d", str(workdir), "--configfile", str(config), *extra]
    if slurm_triggers:
        args += ["--rerun-triggers", *slurm_rerun_triggers(Path(snakefile).parent)]
    proc = snakemake(*args, snakefile=snakefile)
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_second_run_with_nothing_changed_schedules_no_job(complete_run):
    workdir, config, _ = complete_run
    output = dry(workdir, config)
    assert scheduled(output) == {} and "Nothing to be done" in output


@pytest.mark.slow
def test_a_new_checkpoint_schedules_only_its_own_jobs_and_the_trend(complete_run, tmp_path):
    workdir, config, data = complete_run
    new = data / "runs" / "checkpoint-200"
    shutil.copytree(data / "checkpoints" / "deaf", new)
    try:
        (new / "COMPLETE").unlink()
        assert scheduled(dry(workdir, config)) == {}  # not complete yet: not picked up
        (new / "COMPLETE").write_text("done\n")
        output = dry(workdir, config)
        counts = scheduled(output)
        assert counts["trend"] == 1 and counts["report"] == 1 and counts["token_space"] == 1
        assert "token_space_stage2" not in counts
        outputs = [o for o in scheduled_outputs(output) if "ckpt=" in o]
        assert outputs and all("ckpt=checkpoint-200" in o for o in outputs)
    finally:
        shutil.rmtree(new)


@pytest.mark.slow
def test_editing_library_or_script_code_schedules_no_gpu_job_under_the_slurm_profile(complete_run, tmp_path):
    workdir, config, _ = complete_run
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "results", "resources", ".snakemake", "logs", "__pycache__"))
    for path in (copy / "workflow/scripts/lm_block.py", copy / "workflow/scripts/decode_block.py",
                 copy / "src/mmgate/generation.py"):
        path.write_text(path.read_text() + "\n# an edit that changes the code\n")
    with_profile = scheduled(dry(workdir, config, slurm_triggers=True, snakefile=copy / "Snakefile"))
    assert not block_jobs(with_profile), with_profile
    # both profiles leave `code` out; asked for, the code trigger does rerun them
    with_code = scheduled(dry(workdir, config, "--rerun-triggers", "mtime", "input", "params", "code",
                              snakefile=copy / "Snakefile"))
    assert block_jobs(with_code, "generate") and block_jobs(with_code, "ablate") and block_jobs(with_code, "decode")
    assert not block_jobs(scheduled(dry(workdir, config, snakefile=copy / "Snakefile")))


@pytest.mark.slow
def test_changing_a_generation_setting_reruns_generation_and_its_dependents_only(complete_run, tmp_path):
    workdir, config, _ = complete_run
    changed = yaml.safe_load(config.read_text())
    changed["generation"]["temperature"] = 0.9
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    counts = scheduled(dry(workdir, path, slurm_triggers=True))
    blocks = block_jobs(counts)
    assert set(counts) - set(blocks) == {"fingerprint", "report", "trend", "verdicts", "all"}, counts
    assert not block_jobs(counts, "ablate"), counts
    # a block per shard: 2 write tasks x 2 modes x 2 shards, and their 2 x 2 constrained ones decoded
    assert sum(block_jobs(counts, "generate").values()) == len(block_jobs(counts, "generate")) == 2 * 2 * 2, counts
    assert sum(block_jobs(counts, "decode").values()) == len(block_jobs(counts, "decode")) == 2 * 2, counts


@pytest.mark.slow
def test_a_generation_job_killed_mid_shard_leaves_no_parquet_and_the_next_run_finishes(demo_workdir, tmp_path):
    # one sample a batch: the shard takes long enough to be killed in the middle
    config = data_config(tmp_path, demo_workdir, per_task=None,
                         generation={**yaml.safe_load(CONFIG.read_text())["generation"], "batch_size": 1})
    target = "results/generate/ckpt=good/task=t2a/mode=free/part-000.parquet"
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), target, "--cores", "2", "-d", str(tmp_path),
           "--configfile", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    logs = tmp_path / "logs/blocks/good"  # the log of the block (of one shard) that writes the target
    deadline = time.time() + 300
    while time.time() < deadline and not list(logs.glob("generate_block_*.log")):  # the job's script has started
        time.sleep(0.2)
    time.sleep(6)  # the model is loaded and batches are running (the shard takes ~15 s)
    session = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    job = [int(pid) for pid in session if "lm_block.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert job, "the generation job was not running"
    os.kill(job[0], signal.SIGKILL)  # the job dies as on preemption; Snakemake itself survives and gives up
    assert proc.wait(timeout=120) != 0
    out = tmp_path / target
    assert not out.exists(), "a killed job must not leave the shard's parquet"
    snakemake(target, "--cores", "2", "-d", str(tmp_path), "--configfile", str(config), "--rerun-incomplete")
    assert len(read_parquet(out)) == 128


@pytest.mark.slow
def test_a_corrupt_parquet_left_by_hand_is_reported_with_the_fix(complete_run, tmp_path):
    workdir, config, _ = complete_run
    part = workdir / "results/generate/ckpt=checkpoint-100/task=t2i/mode=constrained/part-001.parquet"
    backup = part.read_bytes()
    try:
        part.write_bytes(backup[: len(backup) // 2])
        proc = snakemake("results/decode/ckpt=checkpoint-100/task=t2i/part-001.parquet", "--cores", "1", "-d", str(workdir),
                         "--configfile", str(config), check=False)
        assert proc.returncode != 0
        [block] = set(re.findall(r"^(?:local)?rule (decode_block_\d{3}):", proc.stdout + proc.stderr, re.M))  # the one that ran
        log = (workdir / f"logs/blocks/checkpoint-100/{block}.log").read_text()
        assert f"{part.relative_to(workdir)}: not a readable parquet file" in log and "Delete it and rerun" in log
    finally:
        part.write_bytes(backup)


@pytest.mark.slow
def test_one_checkpoint_failing_p01_does_not_stop_the_others_and_is_not_retried(demo_workdir, tmp_path):
    config = data_config(tmp_path, demo_workdir)
    (tmp_path / "data" / "checkpoints" / "deaf" / "token_space.sha256").write_text("0" * 64 + "\n")
    proc = snakemake("check_token_space", "--cores", "2", "-d", str(tmp_path), "--configfile", str(config), "--keep-going",
                     "--retries", "2", check=False)
    assert proc.returncode != 0
    for ckpt, passed in (("good", True), ("deaf", False)):
        assert read_parquet(tmp_path / f"results/token_space/ckpt={ckpt}/check.parquet")["match"].all() == passed
    assert "P0.1 token-space check FAILED for checkpoint 'deaf'" in (tmp_path / "logs/token_space/deaf.log").read_text()
    # the verdict job's mmgate error is deterministic: its retries stop at once with the same message
    verdicts = (tmp_path / "logs/token_space/verdicts.log").read_text()
    assert "Not retried" in verdicts and "P0.1 token-space check FAILED for checkpoint 'deaf'" in verdicts


@pytest.mark.slow
def test_a_checkpoint_failing_p01_gets_a_failing_report_no_gpu_job_and_a_trend_row(complete_run, tmp_path):
    from mmgate.cli import main as cli

    workdir, config, data = complete_run
    bad = data / "runs" / "checkpoint-300"
    shutil.copytree(data / "checkpoints" / "good", bad)
    (bad / "token_space.sha256").write_text("0" * 64 + "\n")
    try:
        proc = snakemake("--cores", "2", "-d", str(workdir), "--configfile", str(config))
        assert "rule generate_block_" not in proc.stdout + proc.stderr
        assert not (workdir / "results/generate/ckpt=checkpoint-300").exists()
        report = json.loads((workdir / "results/report/ckpt=checkpoint-300/gates.json").read_text())
        verdicts = {g["gate"]: g["verdict"] for g in report["gates"]}
        assert verdicts["P0.1"] == "FAIL" and {v for g, v in verdicts.items() if g != "P0.1"} == {"SKIP"}
        assert report["overall"] == "not valid" and "checkpoint checkpoint-300" in report["gates"][0]["reasons"][0]
        trend = read_parquet(workdir / STAGES["trend"].path())
        assert "checkpoint-300" in set(trend["checkpoint"])
        assert cli(["check", str(workdir / "results")]) == 1
        assert cli(["check", str(workdir / "results/report/ckpt=checkpoint-100")]) == 0
    finally:
        shutil.rmtree(bad)
        shutil.rmtree(workdir / "results/token_space/ckpt=checkpoint-300", ignore_errors=True)
        shutil.rmtree(workdir / "results/report/ckpt=checkpoint-300", ignore_errors=True)


@pytest.mark.slow
def test_a_shrunken_golden_set_gives_verdicts_on_the_new_samples_only(complete_run, tmp_path):
    """Shards of an earlier, larger golden set stay on disk; no verdict may count them."""
    from mmgate.golden import read_golden
    from mmgate.io import write_parquet

    workdir, config, data = complete_run
    shutil.copytree(workdir / "results", tmp_path / "results")  # part-001 of every task is now stale
    golden = read_golden(data / "golden.parquet")
    small = golden[golden["task"] != "i2t"].groupby("task").head(10).reset_index(drop=True)  # and no i2t at all
    write_parquet(small, tmp_path / "golden.parquet", {})
    changed = yaml.safe_load(config.read_text())
    changed["golden_set"] = str(tmp_path / "golden.parquet")
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(changed))
    proc = snakemake("--cores", "2", "-d", str(tmp_path), "--configfile", str(path))
    # the earlier plan's shards leave the datasets a user browses, and are kept under results/.stale
    stale = "results/generate/ckpt=checkpoint-100/task=t2a/mode=free/part-001.parquet"
    assert not (tmp_path / stale).exists() and (tmp_path / "results/.stale" / stale.removeprefix("results/")).exists()
    assert f"{stale} is not in the current plan" in proc.stderr
    assert len(pd.read_parquet(tmp_path / "results/generate/ckpt=checkpoint-100/task=t2a")) == 2 * 10
    assert not browsing_problems(tmp_path / "results")  # every folder still one table of its stage
    assert not (tmp_path / "results/ablate/ckpt=checkpoint-100/task=i2t").exists()
    report = json.loads((tmp_path / "results/report/ckpt=checkpoint-100/gates.json").read_text())
    gates = {g["gate"]: g for g in report["gates"]}
    for gate in ("P0.2", "P0.3", "P1.1", "P1.3"):
        assert {task: v["n"] for task, v in gates[gate]["values"].items()} == {"t2a": 10, "t2i": 10}, gate
    assert gates["P1.2"]["verdict"] == "WARN" and any(f"n=10 < min_n={PER_TASK}" in r for r in gates["P1.2"]["reasons"])
    assert gates["P1.2"]["values"]["i2t"] == "SKIP: task absent from the golden set"
    assert report["overall"] != "ready to promote"


def parquet_mtimes(root):
    return {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*.parquet")}


@pytest.mark.slow
def test_a_duplicate_sample_id_stops_the_run_before_any_job_and_deletes_nothing(complete_run, tmp_path):
    from mmgate.golden import read_golden
    from mmgate.io import write_parquet

    workdir, config, data = complete_run
    golden = read_golden(data / "golden.parquet")
    write_parquet(pd.concat([golden, golden.iloc[[3]]], ignore_index=True), tmp_path / "golden.parquet", {})
    changed = yaml.safe_load(config.read_text())
    changed["golden_set"] = str(tmp_path / "golden.parquet")
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(changed))
    before = parquet_mtimes(workdir)
    for extra in (["-n"], ["--cores", "2", "--keep-going"]):
        proc = snakemake(*extra, "-d", str(workdir), "--configfile", str(path), check=False)
        assert proc.returncode != 0 and "duplicate sample_id" in proc.stdout + proc.stderr
    assert parquet_mtimes(workdir) == before


@pytest.mark.slow
def test_rerunning_p01_with_the_same_result_reruns_no_gpu_job(complete_run):
    from mmgate.io import read_provenance, write_parquet

    workdir, config, data = complete_run
    snakemake("--cores", "2", "-d", str(workdir), "--configfile", str(config))  # up to date after earlier tests
    shard = data / "stage2" / "part-000.parquet"
    # e.g. a Stage-2 shard rewritten with the same token space: the check reruns, and passes as before
    write_parquet(read_parquet(shard), shard, {**read_provenance(shard), "rewritten": True})
    proc = snakemake("--cores", "2", "-d", str(workdir), "--configfile", str(config))
    ran = set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", proc.stdout + proc.stderr, re.M))
    assert {"token_space_stage2", "token_space"} <= ran and not block_jobs(ran), ran


@pytest.mark.slow
def test_a_deleted_shard_is_made_again_by_asking_for_it(complete_run):
    """Snakemake does not remake a deleted intermediate file whose consumers are up to date; the
    unreadable-parquet message gives this command."""
    workdir, config, _ = complete_run
    target = "results/decode/ckpt=checkpoint-100/task=t2i/part-001.parquet"
    part = workdir / target
    backup, stat = part.read_bytes(), part.stat()
    part.unlink()
    try:
        proc = snakemake(target, "-n", "-d", str(workdir), "--configfile", str(config))  # the target before --configfile
        counts = scheduled(proc.stdout + proc.stderr)
        assert list(block_jobs(counts).values()) == [1] and block_jobs(counts, "decode"), counts
    finally:
        part.write_bytes(backup)
        os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("profile", ["default", "slurm", "slurm-local"])
def test_every_profile_reruns_on_data_and_settings_but_not_on_code(profile):
    triggers = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())["rerun-triggers"]
    assert "code" not in triggers and {"mtime", "params", "input"} <= set(triggers)
