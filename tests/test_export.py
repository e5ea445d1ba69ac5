"""`mmgate export`: gate metrics by step and a few outputs in TensorBoard event files."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmgate.cli import main as cli
from mmgate.fingerprint import read_wav
from mmgate.io import write_parquet, write_text

pytest.importorskip("tensorboard")


def write_checkpoint(root, name, step, run, end_rate, verdict="PASS"):
    """A results tree with one checkpoint's gates.json and the decode shards its P0.3 evidence names."""
    from mmgate.decode import write_wav

    decode = {}
    for task, suffix in (("t2a", "wav"), ("t2i", "png")):
        folder = root / f"results/decode/ckpt={name}/task={task}"
        for i in range(3):
            path = folder / f"part-000/{task}-{i}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if suffix == "wav":
                write_wav(path, np.sin(np.arange(800)[None] / (3 + i)).astype(np.float32) * 0.5, 8000)
            else:
                Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(path)
        frame = pd.DataFrame({"sample_id": [f"{task}-{i}" for i in range(3)], "ok": True,
                              "file": [f"part-000/{task}-{i}.{suffix}" for i in range(3)]})
        write_parquet(frame, folder / "part-000.parquet", {})
        decode[task] = f"results/decode/ckpt={name}/task={task}/part-000.parquet"
    report = {"checkpoint": name, "step": step, "overall": "ready to promote",
              "provenance": {"checkpoint_dir": f"/runs/{run}/{name}"},
              "gates": [{"gate": "P0.3", "verdict": "PASS", "values": {}, "thresholds": {}, "evidence": list(decode.values())},
                        {"gate": "P1.1", "verdict": verdict, "thresholds": {"min_end_rate": 0.5}, "evidence": [],
                         "values": {"t2a": {"n": 3, "end_rate": end_rate}}}]}
    write_text(root / f"results/report/ckpt={name}/gates.json", json.dumps(report))


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "audio": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_export_writes_each_gate_metric_and_verdict_by_training_step(tmp_path):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.3, verdict="WARN")
    write_checkpoint(tmp_path, "checkpoint-1000", 1000, "run-a", end_rate=0.7)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    run = events(tmp_path / "tb" / "run-a")
    assert [(e.step, e.value) for e in run.Scalars("P1.1/t2a/end_rate")] == [(500, pytest.approx(0.3)),
                                                                             (1000, pytest.approx(0.7))]
    assert [(e.step, e.value) for e in run.Scalars("verdict/P1.1")] == [(500, 0.5), (1000, 1.0)]


def test_tensorboard_export_carries_a_few_decoded_outputs(tmp_path):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.6)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb"), "--media", "2"]) == 0
    tags = events(tmp_path / "tb" / "run-a").Tags()
    assert tags["audio"] == ["t2a/t2a-0", "t2a/t2a-1"] and tags["images"] == ["t2i/t2i-0", "t2i/t2i-1"]
    audio = events(tmp_path / "tb" / "run-a").Audio("t2a/t2a-0")[0]
    assert audio.sample_rate == 8000 and audio.length_frames == read_wav(
        tmp_path / "results/decode/ckpt=checkpoint-500/task=t2a/part-000/t2a-0.wav")[0].shape[1]


def test_unrelated_training_runs_get_runs_of_their_own(tmp_path):
    write_checkpoint(tmp_path, "a-500", 500, "run-a", end_rate=0.6)
    write_checkpoint(tmp_path, "b-500", 500, "run-b", end_rate=0.6)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["run-a", "run-b"]


def test_an_export_without_its_package_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.6)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert cli(["export", str(tmp_path / "results"), "--wandb", "mmgate"]) == 1
    assert "--wandb needs the wandb package: pip install wandb" in capsys.readouterr().err
