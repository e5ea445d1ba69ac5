"""One shard-job object: generate, ablate and decode see the same rows, template, model and provenance."""

from types import SimpleNamespace

import pandas as pd
import pytest

from mmgate.ablation import AblationSettings, ablate_shard
from mmgate.demo import DEFAULT_TEMPLATES, SyntheticWorld, golden_frame
from mmgate.errors import TokenSpaceMismatch
from mmgate.generation import GenerationSettings, generate_shard
from mmgate.io import write_parquet
from mmgate.shardjob import ShardJob


@pytest.fixture(scope="module")
def golden_path(mini_demo):
    path = mini_demo["root"] / "golden_shardjob.parquet"
    write_parquet(golden_frame(SyntheticWorld(mini_demo["space"]), per_task=7, seed=5), path, {})
    return path


def smk_job(mini_demo, golden_path, check=(), samples_per_task=None, **wildcards):
    return SimpleNamespace(
        input=SimpleNamespace(token_space=str(mini_demo["root"] / "token_space.json"), golden=str(golden_path),
                              check=list(check)),
        wildcards=SimpleNamespace(**{"ckpt": "mini", "shard": "001", **wildcards}),
        params=SimpleNamespace(samples_per_shard=3, samples_per_task=samples_per_task, ckpt_dir=str(mini_demo["ckpt"]),
                               template=DEFAULT_TEMPLATES.get(wildcards.get("write_task") or wildcards.get("task")),
                               model={"base": str(mini_demo["stage3"]), "dtype": "float32", "device": "cpu"}),
    )


def test_a_write_job_and_a_read_job_name_their_task_and_their_shard_of_rows(mini_demo, golden_path):
    write = ShardJob.from_snakemake(smk_job(mini_demo, golden_path, write_task="t2a", mode="free"))
    read = ShardJob.from_snakemake(smk_job(mini_demo, golden_path, task="a2t"))
    assert (write.task, read.task) == ("t2a", "a2t")
    assert write.rows["sample_id"].tolist() == sorted(write.task_rows["sample_id"])[3:6]
    assert len(write.task_rows) == 7 and (write.task_rows["task"] == "t2a").all()


def test_a_generate_job_shards_its_generation_subset_while_ablation_scores_every_row(mini_demo, golden_path):
    from mmgate.golden import generation_subset

    parts = [ShardJob.from_snakemake(smk_job(mini_demo, golden_path, samples_per_task=4, write_task="t2a", mode="free",
                                             shard=shard)) for shard in ("000", "001")]
    subset = generation_subset(parts[0].task_rows, 4)["sample_id"].tolist()
    assert [len(p.rows) for p in parts] == [3, 1]
    assert parts[0].rows["sample_id"].tolist() + parts[1].rows["sample_id"].tolist() == subset
    ablate = ShardJob.from_snakemake(smk_job(mini_demo, golden_path, task="t2a", shard="000"))
    assert len(ablate.rows) == 3 and len(ablate.task_rows) == 7


def test_provenance_names_checkpoint_task_shard_and_the_token_space(mini_demo, golden_path):
    job = ShardJob.from_snakemake(smk_job(mini_demo, golden_path, task="a2t"))
    meta = job.provenance("ablate", extra=1)
    assert (meta["checkpoint"], meta["task"], meta["shard"], meta["extra"]) == ("mini", "a2t", 1, 1)
    assert meta["token_space.sha256"] == mini_demo["space"].sha256


def test_a_job_whose_checkpoint_failed_p01_refuses_to_run(mini_demo, golden_path, tmp_path):
    check = tmp_path / "check.parquet"
    write_parquet(pd.DataFrame([{"kind": "special", "name": "<aud_start>", "source": "tokenizer", "expected": "30",
                                 "found": "31", "match": False, "path": "ckpt/tokenizer.json", "fix": "re-save"}]),
                  check, {})
    with pytest.raises(TokenSpaceMismatch):
        ShardJob.from_snakemake(smk_job(mini_demo, golden_path, check=[str(check)], write_task="t2a", mode="free"))


def test_generate_and_ablate_score_exactly_the_same_samples_of_a_shard(mini_demo, golden_path):
    job = ShardJob.from_snakemake(smk_job(mini_demo, golden_path, write_task="t2i", mode="free"))
    generated, gen_meta = generate_shard(job, "free", GenerationSettings(batch_size=4), progress=False)
    ablated, abl_meta = ablate_shard(job, AblationSettings(batch_size=4))
    assert generated["sample_id"].tolist() == job.rows["sample_id"].tolist()
    assert sorted(ablated["sample_id"].unique()) == job.rows["sample_id"].tolist()
    shared = ("checkpoint", "task", "shard", "checkpoint_dir", "base", "dtype", "device", "template")
    assert {k: gen_meta[k] for k in shared} == {k: abl_meta[k] for k in shared}
