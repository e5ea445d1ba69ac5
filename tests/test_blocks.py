"""Several shards per GPU job (sharding.shards_per_job): one model load, one parquet per shard, the same results."""

import json
import logging
import re

import pandas as pd
import pytest
from conftest import mini_shard_job, snakemake

from mmgate.ablation import AblationSettings, ablate_shard
from mmgate.blocks import (
    KeptShards,
    Unit,
    ablate_units,
    blocks,
    decode_units,
    generate_units,
    job_timing,
    run_lm_units,
)
from mmgate.demo import DEFAULT_TEMPLATES
from mmgate.generation import GenerationSettings, generate_shard
from mmgate.io import read_parquet, read_provenance, write_parquet
from mmgate.shardjob import ShardJob

LOG = logging.getLogger("test_blocks")


# --------------------------------------------------------------------------------------- the plan

def test_generation_units_put_each_tasks_constrained_shards_first():
    assert [u.label for u in generate_units({"t2a": ["000", "001"], "t2i": ["000"], "a2t": ["000"]})] == [
        "generate t2a/constrained 000", "generate t2a/constrained 001", "generate t2a/free 000", "generate t2a/free 001",
        "generate t2i/constrained 000", "generate t2i/free 000"]


def test_ablation_units_cover_every_task_and_shard():
    assert [u.label for u in ablate_units({"t2a": ["000"], "a2t": ["000", "001"]})] == [
        "ablate t2a 000", "ablate a2t 000", "ablate a2t 001"]


def test_decode_units_are_the_generation_shards_of_the_write_tasks():
    assert [u.label for u in decode_units({"t2a": ["000", "001"], "a2t": ["000"]})] == ["decode t2a 000", "decode t2a 001"]


def test_blocks_keep_the_order_and_put_the_remainder_in_the_last():
    units = [Unit("ablate", "a2t", f"{i:03d}") for i in range(7)]
    plan = blocks(units, 3)
    assert [len(b) for b in plan] == [3, 3, 1] and [u for b in plan for u in b] == units


def test_one_shard_per_job_is_a_block_per_shard_and_zero_is_refused():
    units = [Unit("ablate", "a2t", f"{i:03d}") for i in range(3)]
    assert blocks(units, 1) == [(u,) for u in units]
    with pytest.raises(ValueError, match="at least 1"):
        blocks(units, 0)


def test_a_unit_lives_at_its_stages_shard_path():
    assert Unit("generate", "t2i", "002", "free").output("step-10") == \
        "results/generate/ckpt=step-10/task=t2i/mode=free/part-002.parquet"
    assert Unit("decode", "t2a", "000").output("c") == "results/decode/ckpt=c/task=t2a/part-000.parquet"


@pytest.mark.parametrize("unit", [Unit("generate", "t2i", "002", "free"), Unit("ablate", "a2t", "013"),
                                  Unit("decode", "t2a", "000")])
def test_a_block_job_reads_each_unit_back_from_its_output_path(unit):
    assert Unit.from_output(unit.output("checkpoint-1200")) == unit


def test_a_path_that_is_no_shard_output_is_refused_naming_the_expected_form():
    with pytest.raises(ValueError, match=r"summary.parquet: not a shard output .*part-\{shard\}.parquet"):
        Unit.from_output("results/ablate/ckpt=c/task=a2t/summary.parquet")


# ---------------------------------------------------------------------------- the rules it plans

def test_each_block_is_one_job_writing_its_shards_files_with_the_profiles_block_settings(user_config, tmp_path):
    """4 generation shards (2 write tasks x 2 modes), 4 ablation shards and 2 decode shards, each stage
    in blocks of its own of up to 3; a profile's generate_block / ablate_block / decode_block entries
    reach every block rule of their stage."""
    check = tmp_path / "run" / "results" / "token_space" / "ckpt=mine" / "check.parquet"
    check.parent.mkdir(parents=True)
    pd.DataFrame({"artifact": ["checkpoint"], "match": [True]}).to_parquet(check)  # P0.1 passed: plan the GPU work
    out = snakemake("-n", "--cores", "8", "-d", str(tmp_path / "run"), "--configfile",
                    str(user_config(sharding={"samples_per_shard": 128, "shards_per_job": 3})),
                    "--set-resources", "generate_block:gpu_model=h100", "ablate_block:gpu_model=a100",
                    "decode_block:gpu_model=l4", "--set-threads", "generate_block=3").stdout
    jobs = {m.group(1): m.group(2) for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", out, re.M | re.S)}
    blocks_planned = {name for name in jobs if "_block_" in name}
    assert blocks_planned == {"generate_block_000", "generate_block_001", "ablate_block_000", "ablate_block_001",
                              "decode_block_000"}, sorted(jobs)
    stats = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+_block_\d{3})\s+(\d+)$", out, re.M)}
    assert stats == dict.fromkeys(blocks_planned, 1), out  # one job per block of the checkpoint
    assert "output: results/generate/ckpt=mine/task=t2a/mode=constrained/part-000.parquet," in jobs["generate_block_000"]
    assert "results/generate/ckpt=mine/task=t2i/mode=free/part-000.parquet" in jobs["generate_block_001"]
    assert "results/ablate/ckpt=mine/task=i2t/part-000.parquet" in jobs["ablate_block_001"]
    assert not any("results/ablate/" in jobs[name] for name in ("generate_block_000", "generate_block_001"))
    for name in ("generate_block_000", "generate_block_001"):
        assert "gpu_model=h100" in jobs[name] and "threads: 3" in jobs[name]
    assert "runtime=180" in jobs["generate_block_000"] and "runtime=60" in jobs["generate_block_001"]
    assert "gpu_model=a100" in jobs["ablate_block_000"] and "threads: 2" in jobs["ablate_block_000"]
    assert "gpu_model=l4" in jobs["decode_block_000"] and "runtime=60" in jobs["decode_block_000"]


# ------------------------------------------------------------------------- running a block (library)

@pytest.fixture(scope="module")
def base_job(mini_demo):
    return mini_shard_job(mini_demo, "golden_blocks", per_task=4, samples_per_shard=2)


def missing_as_none(frame):
    """Values with every missing one as None: a file types an all-null column by its stage's schema."""
    return frame.astype(object).where(frame.notna(), None)


def test_a_block_loads_the_model_once_and_gives_each_shard_what_a_job_of_its_own_gives(base_job, tmp_path, monkeypatch):
    units = [Unit("generate", "t2a", "001", "constrained"), Unit("ablate", "a2t", "000"), Unit("generate", "t2i", "000", "free")]
    jobs = [base_job.for_shard(u.task, int(u.shard), DEFAULT_TEMPLATES[u.task]) for u in units]
    generation, ablation = GenerationSettings(batch_size=2, seed=4), AblationSettings(batch_size=2)
    alone = [generate_shard(jobs[0], "constrained", generation, progress=False)[0], ablate_shard(jobs[1], ablation)[0],
             generate_shard(jobs[2], "free", generation, progress=False)[0]]

    loads = []
    load_model = ShardJob.load_model
    monkeypatch.setattr(ShardJob, "load_model", lambda self: loads.append(self.task) or load_model(self))
    outputs = [tmp_path / "block" / f"{i}.parquet" for i in range(3)]
    run_lm_units(list(zip(units, jobs, outputs)), generation, ablation, LOG, progress=False)

    assert len(loads) == 1
    for expected, output in zip(alone, outputs):
        got = read_parquet(output)
        columns = [c for c in expected if not c.endswith(("_seconds", "per_second"))]
        pd.testing.assert_frame_equal(missing_as_none(got[columns]), missing_as_none(expected[columns]))
    timing = [read_provenance(o)["timing"] for o in outputs]
    assert {t["shards_in_job"] for t in timing} == {3} and len({t["load_seconds"] for t in timing}) == 1
    assert [row["stage"] for row in job_timing(outputs)] == ["generate", "ablate", "generate"]


# ------------------------------------------ a failed block keeps its finished shards (KeptShards)

def finished_shard(root, name="part-000", text="finished"):
    shard = root / "results" / "ablate" / "ckpt=s1" / "task=t2a" / f"{name}.parquet"
    shard.parent.mkdir(parents=True, exist_ok=True)
    shard.write_text(text)
    return shard


def kept_entries(root):
    return sorted(p.name for p in (root / "results" / ".kept").rglob("*@*"))


def test_a_kept_shard_comes_back_after_snakemake_removed_the_failed_jobs_outputs(tmp_path):
    shard = finished_shard(tmp_path)
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    kept.keep(shard)
    shard.unlink()
    assert kept.restore(shard) and shard.read_text() == "finished"
    assert not kept.restore(shard.with_name("part-001.parquet"))  # never finished: computed


def test_a_kept_decode_shard_comes_back_with_its_folder_of_decoded_files(tmp_path):
    shard = finished_shard(tmp_path)
    media = tmp_path / "results/media/ckpt=s1/task=t2a/part-000"
    (media / "a").mkdir(parents=True)
    (media / "a" / "0.wav").write_text("wave")
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    kept.keep(shard, media)
    shard.unlink()
    (media / "a" / "0.wav").unlink()
    assert kept.restore(shard, media)
    assert (media / "a" / "0.wav").read_text() == "wave"


def test_a_folder_missing_from_the_kept_entry_is_no_restore(tmp_path):
    shard = finished_shard(tmp_path)
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    kept.keep(shard)  # the table alone
    assert not kept.restore(shard, tmp_path / "results/media/ckpt=s1/task=t2a/part-000")


@pytest.mark.parametrize("change", ["params", "input", "code"])
def test_a_changed_param_input_or_code_restores_nothing_and_drops_the_stale_entry(tmp_path, change):
    shard = finished_shard(tmp_path)
    golden, script = tmp_path / "golden.parquet", tmp_path / "block.py"
    golden.write_text("rows")
    script.write_text("print('v1')")
    root = tmp_path / "results" / ".kept"
    KeptShards.for_job({"temperature": 1.0}, [golden], [script], root=root).keep(shard)
    if change == "params":
        params = {"temperature": 0.7}
    else:
        params = {"temperature": 1.0}
        (golden if change == "input" else script).write_text("rows, edited")
    later = KeptShards.for_job(params, [golden], [script], root=root)
    assert not later.restore(shard)
    assert kept_entries(tmp_path) == []


def test_the_same_params_inputs_and_code_give_the_same_key(tmp_path):
    golden = tmp_path / "golden.parquet"
    golden.write_text("rows")
    first, again = (KeptShards.for_job({"seed": 1, "model": {"dtype": "bf16"}}, [golden], root=tmp_path) for _ in range(2))
    assert first.key == again.key


def test_releasing_a_finished_block_drops_its_entries_and_keeps_its_shards(tmp_path):
    shards = [finished_shard(tmp_path, f"part-00{i}") for i in range(2)]
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    for shard in shards:
        kept.keep(shard)
    kept.release(shards)
    assert not (tmp_path / "results" / ".kept").exists() and all(s.read_text() == "finished" for s in shards)


def test_a_block_killed_in_its_second_shard_restores_the_first_and_recomputes_the_rest(base_job, tmp_path, monkeypatch):
    import mmgate.generation

    units = [Unit("generate", "t2a", "000", "constrained"), Unit("generate", "t2a", "001", "constrained")]
    jobs = [base_job.for_shard(u.task, int(u.shard), DEFAULT_TEMPLATES[u.task]) for u in units]
    outputs = [tmp_path / "results" / "generate" / f"part-00{i}.parquet" for i in range(2)]
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    generation = GenerationSettings(batch_size=2, seed=4)
    real, calls = mmgate.generation.generate_shard, []

    def killed_in_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("CUDA out of memory (the second shard)")
        return real(*args, **kwargs)

    monkeypatch.setattr(mmgate.generation, "generate_shard", killed_in_second)
    with pytest.raises(MemoryError):
        run_lm_units(list(zip(units, jobs, outputs)), generation, None, LOG, progress=False, kept=kept)
    first = outputs[0].read_bytes()
    outputs[0].unlink()  # Snakemake removes a failed job's outputs

    monkeypatch.setattr(mmgate.generation, "generate_shard", real)
    loads = []
    load_model = ShardJob.load_model
    monkeypatch.setattr(ShardJob, "load_model", lambda self: loads.append(self.task) or load_model(self))
    run_lm_units(list(zip(units, jobs, outputs)), generation, None, LOG, progress=False, kept=kept)

    assert outputs[0].read_bytes() == first  # the same file, timing included: not generated again
    assert read_parquet(outputs[1])["sample_id"].tolist() and len(loads) == 1
    assert kept_entries(tmp_path) == []


def test_a_shard_that_cannot_be_kept_is_still_written_and_the_block_goes_on(base_job, tmp_path, caplog):
    unit = Unit("ablate", "a2t", "000")
    job = base_job.for_shard(unit.task, 0, DEFAULT_TEMPLATES[unit.task])
    output = tmp_path / "results" / "ablate" / "part-000.parquet"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / ".kept").write_text("a file where the kept folder goes")
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    with caplog.at_level(logging.WARNING):
        run_lm_units([(unit, job, output)], None, AblationSettings(batch_size=2), LOG, progress=False, kept=kept)
    assert read_parquet(output)["sample_id"].nunique() == len(job.rows)
    assert "not kept" in caplog.text


def test_a_block_whose_every_shard_is_kept_loads_no_model(base_job, tmp_path, monkeypatch):
    unit = Unit("ablate", "a2t", "000")
    job = base_job.for_shard(unit.task, 0, DEFAULT_TEMPLATES[unit.task])
    output = tmp_path / "results" / "ablate" / "part-000.parquet"
    kept = KeptShards("settings", root=tmp_path / "results" / ".kept")
    write_parquet(ablate_shard(job, AblationSettings(batch_size=2))[0], output, {})
    kept.keep(output)
    output.unlink()
    monkeypatch.setattr(ShardJob, "load_model", lambda self: pytest.fail("loaded a model for a kept shard"))
    run_lm_units([(unit, job, output)], None, AblationSettings(batch_size=2), LOG, progress=False, kept=kept)
    assert output.exists()


# ------------------------------------------- through Snakemake: the suite's zoo run uses blocks of 8
# (tests/conftest.py); test_cluster runs blocks through real SLURM against a local run of a block per shard

def zoo_checkpoints(zoo_run):
    return sorted(p.name.split("=", 1)[1] for p in (zoo_run / "results" / "report").glob("ckpt=*"))


@pytest.mark.slow
def test_one_block_job_per_stage_wrote_every_model_shard_of_each_checkpoint(zoo_run):
    root = zoo_run / "results"
    for ckpt in zoo_checkpoints(zoo_run):
        if not (root / "ablate" / f"ckpt={ckpt}").exists():
            continue  # failed P0.1: no GPU work
        for stage in ("generate", "ablate"):
            assert "for 4 shard(s)" in (zoo_run / "logs" / "blocks" / ckpt / f"{stage}_block_000.log").read_text()
        assert len(list(root.glob(f"generate/ckpt={ckpt}/task=*/mode=*/part-*.parquet"))) == 4
        assert len(list(root.glob(f"ablate/ckpt={ckpt}/task=*/part-*.parquet"))) == 4


@pytest.mark.slow
def test_the_shards_of_a_block_share_one_recorded_model_load(zoo_run):
    root = zoo_run / "results"
    for pattern in ("generate/ckpt=good/task=*/mode=*/part-*.parquet", "ablate/ckpt=good/task=*/part-*.parquet"):
        block = job_timing(sorted(root.glob(pattern)))
        assert len(block) == 4 and {row["shards_in_job"] for row in block} == {4}, block
        assert len({row["load_seconds"] for row in block}) == 1, block
    decoded = job_timing(sorted(root.glob("decode/ckpt=good/task=*/part-*.parquet")))
    assert len(decoded) == 2 and {row["shards_in_job"] for row in decoded} == {2}


@pytest.mark.slow
def test_a_changed_generation_setting_reruns_the_blocks_that_generate(zoo_run, tmp_path):
    from conftest import CONFIG, ZOO_CONFIG

    changed = tmp_path / "warmer.yaml"
    changed.write_text("generation: {temperature: 0.7}\n")
    out = snakemake("-n", "-d", str(zoo_run), "--configfile", str(CONFIG), str(ZOO_CONFIG),
                    str(zoo_run / "test-overrides.yaml"), str(changed)).stdout
    assert "rule generate_block_000:" in out and "params have changed since last execution" in out
    assert "rule decode_block_000:" in out  # its inputs are made again
    assert "rule ablate_block_000:" not in out  # scoring the golden targets does not depend on generation


@pytest.mark.slow
def test_other_block_sizes_find_every_shard_made_and_plan_no_job(zoo_run, tmp_path):
    """The shard files, their params and inputs do not depend on k: a cluster that moves from blocks of 8
    to blocks of 2 (or the default 4) reruns nothing, not even a report."""
    from conftest import CONFIG, ZOO_CONFIG

    overrides = json.loads((zoo_run / "test-overrides.yaml").read_text())
    for per_job in (2, 4):
        smaller = tmp_path / f"blocks-of-{per_job}.yaml"
        smaller.write_text(json.dumps({**overrides, "sharding": {**overrides["sharding"], "shards_per_job": per_job}}))
        proc = snakemake("-n", "-d", str(zoo_run), "--configfile", str(CONFIG), str(ZOO_CONFIG), str(smaller))
        out = proc.stdout + proc.stderr
        assert "Nothing to be done" in out, out[-3000:]  # sharding is no param of the reports either


@pytest.mark.slow
def test_a_block_killed_by_the_cluster_keeps_its_finished_shards_for_the_next_run(user_config, mini_demo, tmp_path):
    """The job is killed (SIGKILL, as at a SLURM time limit) once its first shard is kept; Snakemake
    removes the job's outputs; the next run restores that shard and computes the others."""
    import os
    import signal
    import subprocess
    import time

    import psutil
    from conftest import BIN, REPO, stage2_shard

    workdir = tmp_path / "run"
    config = user_config(sharding={"samples_per_shard": 4, "shards_per_job": 4},
                         stage2={"shards": [stage2_shard(mini_demo, tmp_path / "stage2.parquet")]})
    first = "results/generate/ckpt=mine/task=t2a/mode=constrained/part-000.parquet"
    targets = [first.replace("part-000", f"part-00{i}") for i in range(2)]
    command = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *targets, "--cores", "2",
               "-d", str(workdir), "--configfile", str(config)]
    kept_first = workdir / "results" / ".kept" / "generate" / "ckpt=mine" / "task=t2a" / "mode=constrained"
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while not list(kept_first.glob("part-000.parquet@*")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    block = [p for p in psutil.Process(run.pid).children(recursive=True) if "lm_block" in " ".join(p.cmdline())]
    assert block, f"no block job to kill (snakemake exit {run.poll()}):\n{run.stdout.read()[-3000:] if run.poll() is not None else ''}"
    os.kill(block[0].pid, signal.SIGKILL)
    out, _ = run.communicate(timeout=300)
    assert run.returncode != 0 and "generate_block_000" in out, out[-3000:]
    assert not (workdir / first).exists()  # Snakemake removed the failed job's outputs

    snakemake(*targets, "--cores", "2", "-d", str(workdir), "--configfile", str(config))
    log = (workdir / "logs" / "blocks" / "mine" / "generate_block_000.log").read_text()
    assert "generate t2a/constrained 000: restored" in log, log
    assert "generate t2a/constrained 001: restored" not in log
    assert all((workdir / t).exists() for t in targets)
    assert not (workdir / "results" / ".kept").exists()  # a finished block drops what it kept
