"""Shards of an earlier plan, and files of an earlier layout, leave the datasets a user browses;
nothing computed is deleted."""

import pandas as pd

from mmgate.io import write_parquet
from mmgate.stale import move_stale

PLAN = {"generation": {"t2a": {"000"}}, "golden": {"t2a": {"000"}, "a2t": {"000"}}}


def shard(root, relpath, ids):
    write_parquet(pd.DataFrame({"sample_id": ids}), root / relpath, {})
    return root / relpath


def earlier_run(root):
    """A results tree of a golden set twice as large, with an i2t task the current one lacks."""
    for part, ids in (("000", ["a0", "a1"]), ("001", ["a2", "a3"])):
        for mode in ("free", "constrained"):
            shard(root, f"results/generate/ckpt=good/task=t2a/mode={mode}/part-{part}.parquet", ids)
        shard(root, f"results/decode/ckpt=good/task=t2a/part-{part}.parquet", ids)
        media = root / f"results/media/ckpt=good/task=t2a/part-{part}"
        media.mkdir(parents=True)
        (media / f"{ids[0]}.wav").write_bytes(b"RIFF")
        shard(root, f"results/ablate/ckpt=good/task=t2a/part-{part}.parquet", ids)
    shard(root, "results/ablate/ckpt=good/task=i2t/part-000.parquet", ["i0"])
    shard(root, "results/ablation_summary/ckpt=good/task=i2t/summary.parquet", ["i0"])
    shard(root, "results/fingerprint/ckpt=good/task=t2a/fingerprints.parquet", ["a0", "a1"])


def test_shards_of_an_earlier_plan_move_under_stale_with_their_paths(tmp_path):
    earlier_run(tmp_path)
    lines = []
    moved = move_stale(tmp_path / "results", ["good"], PLAN, log=lines.append)
    stale = tmp_path / "results/.stale"
    assert (stale / "generate/ckpt=good/task=t2a/mode=free/part-001.parquet").exists()
    assert (stale / "media/ckpt=good/task=t2a/part-001/a2.wav").exists()  # the media of a shard no longer planned
    assert (stale / "ablation_summary/ckpt=good/task=i2t/summary.parquet").exists()  # a task no longer held
    assert len(moved) == len(lines) == 7 and all("not in the current plan" in line for line in lines)


def test_after_the_move_each_dataset_holds_the_planned_shards_only(tmp_path):
    earlier_run(tmp_path)
    move_stale(tmp_path / "results", ["good"], PLAN, log=lambda line: None)
    generated = pd.read_parquet(tmp_path / "results/generate")
    assert sorted(generated["sample_id"]) == ["a0", "a0", "a1", "a1"]
    assert (tmp_path / "results/media/ckpt=good/task=t2a/part-000/a0.wav").exists()
    assert (tmp_path / "results/fingerprint/ckpt=good/task=t2a/fingerprints.parquet").exists()


def test_checkpoints_outside_the_plan_are_left_alone(tmp_path):
    earlier_run(tmp_path)
    assert move_stale(tmp_path / "results", ["other"], PLAN, log=lambda line: None) == []
    assert (tmp_path / "results/generate/ckpt=good/task=t2a/mode=free/part-001.parquet").exists()


def test_a_second_move_replaces_an_older_stale_copy(tmp_path):
    earlier_run(tmp_path)
    move_stale(tmp_path / "results", ["good"], PLAN, log=lambda line: None)
    earlier_run_again = tmp_path / "results/media/ckpt=good/task=t2a/part-001"
    earlier_run_again.mkdir()
    shard(tmp_path, "results/decode/ckpt=good/task=t2a/part-001.parquet", ["a9"])
    move_stale(tmp_path / "results", ["good"], PLAN, log=lambda line: None)
    assert not earlier_run_again.exists() and (tmp_path / "results/.stale/media/ckpt=good/task=t2a/part-001").is_dir()


def test_files_of_an_earlier_layout_leave_the_stage_datasets(tmp_path):
    shard(tmp_path, "results/ablate/ckpt=good/task=t2a/part-000.parquet", ["a0"])
    shard(tmp_path, "results/ablate/ckpt=good/task=t2a/summary.parquet", ["a0"])
    shard(tmp_path, "results/fingerprint/ckpt=good/task=t2a/fingerprints.parquet", ["a0"])
    shard(tmp_path, "results/fingerprint/ckpt=good/task=t2a/collapse.parquet", ["a0"])
    shard(tmp_path, "results/decode/ckpt=good/task=t2a/part-000.parquet", ["a0"])
    (tmp_path / "results/decode/ckpt=good/task=t2a/part-000").mkdir()  # media inside the dataset
    (tmp_path / "results/decode/ckpt=good/task=t2a/part-000/a0.wav").write_bytes(b"RIFF")
    shard(tmp_path, "results/token_space/stage2.parquet", ["s"])
    shard(tmp_path, "results/report/ckpt=good/gates.parquet", ["g"])
    (tmp_path / "results/report/ckpt=good/report.html").write_text("<html>")
    lines = []
    move_stale(tmp_path / "results", ["good"], PLAN, log=lines.append)
    assert sorted(p.name for p in (tmp_path / "results/ablate").rglob("*.parquet")) == ["part-000.parquet"]
    assert sorted(p.name for p in (tmp_path / "results/fingerprint").rglob("*.parquet")) == ["fingerprints.parquet"]
    assert [p.name for p in (tmp_path / "results/decode").rglob("*")] == ["ckpt=good", "task=t2a", "part-000.parquet"]
    assert (tmp_path / "results/.stale/decode/ckpt=good/task=t2a/part-000/a0.wav").exists()  # one move, one line
    assert (tmp_path / "results/.stale/token_space/stage2.parquet").exists()
    assert (tmp_path / "results/.stale/report/ckpt=good/gates.parquet").exists()
    assert (tmp_path / "results/report/ckpt=good/report.html").exists()  # a page, not a dataset
    assert len(lines) == 5


def test_a_file_of_an_earlier_version_gets_its_stages_schema_with_its_rows_metadata_and_time(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmgate.stages import STAGES
    from mmgate.stale import conform_earlier_files

    path = tmp_path / "results/ablate/ckpt=good/task=t2a/part-000.parquet"
    path.parent.mkdir(parents=True)
    earlier = pa.table({"sample_id": ["a0", "a1"], "condition": ["correct"] * 2, "loss": [1.5, 2.0],
                        "reason": pa.nulls(2)}).replace_schema_metadata({"mmgate": '{"stage": "ablate"}'})
    pq.write_table(earlier, path)  # as an earlier mmgate wrote it: `reason` typed null, columns missing
    before = path.stat().st_mtime_ns
    lines = []
    assert conform_earlier_files(tmp_path / "results", ["good"], PLAN, log=lines.append) == [path]
    schema = pq.read_schema(path)
    assert schema.remove_metadata().equals(STAGES["ablate"].schema) and schema.metadata[b"mmgate"] == b'{"stage": "ablate"}'
    assert pd.read_parquet(path)["loss"].tolist() == [1.5, 2.0] and path.stat().st_mtime_ns == before
    assert len(lines) == 1 and conform_earlier_files(tmp_path / "results", ["good"], PLAN, log=lines.append) == []
