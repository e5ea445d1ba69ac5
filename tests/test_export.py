"""`mmgate export`: gate metrics by step and a few outputs in TensorBoard event files."""

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmgate.cli import main as cli
from mmgate.fingerprint import read_wav
from mmgate.io import write_parquet, write_text
from mmgate.stages import STAGES

pytest.importorskip("tensorboard")


def write_checkpoint(root, name, step, run, end_rate, verdict="PASS", failed=None):
    """A results tree with one checkpoint's gates.json, the decode shards its P0.3 evidence names and
    a golden set with a prompt per sample; `failed` maps sample ids to a decode failure reason."""
    from mmgate.decode import write_wav

    decode = {}
    for task, suffix in (("t2a", "wav"), ("t2i", "png")):
        table = STAGES["decode"].path(ckpt=name, task=task, shard="000")
        media = STAGES["decode"].media_path(ckpt=name, task=task, shard="000")
        files = [f"{media}/{task}-{i}.{suffix}" for i in range(3)]
        for i, file in enumerate(files):
            path = root / file
            path.parent.mkdir(parents=True, exist_ok=True)
            if suffix == "wav":
                write_wav(path, np.sin(np.arange(800)[None] / (3 + i)).astype(np.float32) * 0.5, 8000)
            else:
                Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(path)
        ids = [f"{task}-{i}" for i in range(3)]
        frame = pd.DataFrame({"sample_id": ids, "ok": [i not in (failed or {}) for i in ids],
                              "reason": [(failed or {}).get(i) for i in ids],
                              "file": [f.removeprefix("results/") for f in files]})  # relative to results/
        write_parquet(frame, root / table, {}, STAGES["decode"])
        decode[task] = table
    golden = root / "golden.jsonl"
    golden.write_text("".join(json.dumps({"sample_id": f"{task}-{i}", "task": task, "prompt": f"prompt of {task}-{i}"}) + "\n"
                              for task in ("t2a", "t2i") for i in range(3)))
    report = {"checkpoint": name, "step": step, "overall": "ready to promote",
              "provenance": {"checkpoint_dir": f"/runs/{run}/{name}", "golden_set": str(golden)},
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
        tmp_path / "results/media/ckpt=checkpoint-500/task=t2a/part-000/t2a-0.wav")[0].shape[1]


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


def scalar_steps(folder, tag="verdict/overall_valid"):
    return [e.step for e in events(folder).Scalars(tag)]


def text_at(folder, step, tag="checkpoint/text_summary"):
    return next(e.tensor_proto.string_val[0].decode() for e in events(folder).Tensors(tag) if e.step == step)


def test_a_checkpoint_without_a_training_step_is_refused_with_the_reason_and_the_fix(tmp_path, capsys):
    write_checkpoint(tmp_path, "deaf", None, "run-a", end_rate=0.3)
    write_checkpoint(tmp_path, "good", None, "run-a", end_rate=0.7)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 1
    err = capsys.readouterr().err
    assert "deaf, good" in err and "no known training step" in err
    assert "trainer_state.json" in err and "checkpoint-<N>" in err and "--allow-no-step" in err
    assert not list((tmp_path / "tb").rglob("*tfevents*"))


def test_allow_no_step_exports_by_name_order_in_a_run_labelled_as_positions(tmp_path, capsys):
    write_checkpoint(tmp_path, "good", None, "run-a", end_rate=0.7)
    write_checkpoint(tmp_path, "deaf", None, "run-a", end_rate=0.3)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb"), "--allow-no-step"]) == 0
    assert "by name order" in capsys.readouterr().out
    by_name = tmp_path / "tb" / "run-a" / "by-name-order"
    assert [(e.step, e.value) for e in events(by_name).Scalars("P1.1/t2a/end_rate")] == [(0, pytest.approx(0.3)),
                                                                                        (1, pytest.approx(0.7))]
    assert "deaf" in text_at(by_name, 0) and "position 0 in name order, not a training step" in text_at(by_name, 0)
    assert not list((tmp_path / "tb" / "run-a").glob("*tfevents*"))  # nothing on the training-step axis


def test_checkpoints_with_a_step_are_exported_and_those_without_are_named_as_refused(tmp_path, capsys):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.3)
    write_checkpoint(tmp_path, "deaf", None, "run-a", end_rate=0.6)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "deaf" in capsys.readouterr().err
    assert scalar_steps(tmp_path / "tb" / "run-a") == [500]
    assert not (tmp_path / "tb" / "run-a" / "by-name-order").exists()


def test_exporting_twice_into_one_folder_gives_each_point_once(tmp_path):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.3)
    write_checkpoint(tmp_path, "checkpoint-1000", 1000, "run-a", end_rate=0.7)
    for _ in range(2):
        assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert scalar_steps(tmp_path / "tb" / "run-a") == [500, 1000]
    assert len(list((tmp_path / "tb" / "run-a").glob("*tfevents*"))) == 1
    assert len(events(tmp_path / "tb" / "run-a").Audio("t2a/t2a-0")) == 2


def test_a_checkpoint_added_later_then_exported_gives_every_point_once(tmp_path):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.3)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    write_checkpoint(tmp_path, "checkpoint-1000", 1000, "run-a", end_rate=0.7)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert scalar_steps(tmp_path / "tb" / "run-a") == [500, 1000]
    write_checkpoint(tmp_path, "checkpoint-1500", 1500, "run-a", end_rate=0.8)  # only the new one's folder
    assert cli(["export", str(tmp_path / "results/report/ckpt=checkpoint-1500"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert scalar_steps(tmp_path / "tb" / "run-a") == [500, 1000, 1500]


def test_media_show_outputs_with_a_problem_first(tmp_path):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.6,
                     failed={"t2a-2": "sample rate 16000 but the golden meta says 8000"})
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb"), "--media", "1"]) == 0
    run = events(tmp_path / "tb" / "run-a")
    assert run.Tags()["audio"] == ["t2a/t2a-2"] and run.Tags()["images"] == ["t2i/t2i-0"]
    assert "t2a-2: decode failed: sample rate 16000" in text_at(tmp_path / "tb" / "run-a", 500)


def test_each_output_carries_its_prompt_as_its_description_not_a_text_tag(tmp_path):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.6)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    run = events(tmp_path / "tb" / "run-a")
    assert run.SummaryMetadata("t2a/t2a-0").summary_description == "prompt of t2a-0"
    assert run.SummaryMetadata("t2i/t2i-1").summary_description == "prompt of t2i-1"
    assert not [tag for tag in run.Tags()["tensors"] if "prompt" in tag]


class FakeWandb(types.ModuleType):
    """Stands in for `wandb`: records what is logged and, like W&B's server, keeps a run's config and
    points across `init` calls that resume the same id (resume="allow")."""

    def __init__(self):
        super().__init__("wandb")
        self.runs = {}

    def init(self, project=None, name=None, id=None, resume=None, **_):
        key = (project, id if id is not None else f"new-{len(self.runs)}")
        return FakeRun(self.runs.setdefault(key, {"name": name, "config": {}, "logged": []}))

    def Audio(self, path, caption=None, **_):
        return ("audio", str(path), caption)

    def Image(self, path, caption=None, **_):
        return ("image", str(path), caption)

    def steps(self, name):
        return [step for run in self.runs.values() if run["name"] == name for step, _ in run["logged"]]


class FakeConfig(dict):
    def update(self, values, allow_val_change=False):
        super().update(values)


class FakeRun:
    def __init__(self, stored):
        self.stored, self.config = stored, FakeConfig(stored["config"])

    def log(self, data, step=None):
        self.stored["logged"].append((step, dict(data)))

    def finish(self):
        self.stored["config"] = dict(self.config)


@pytest.fixture
def fake_wandb(monkeypatch):
    module = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_wandb_logs_each_checkpoint_once_across_exports_by_training_step(tmp_path, fake_wandb):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.3)
    assert cli(["export", str(tmp_path / "results"), "--wandb", "proj"]) == 0
    write_checkpoint(tmp_path, "checkpoint-1000", 1000, "run-a", end_rate=0.7)
    for _ in range(2):
        assert cli(["export", str(tmp_path / "results"), "--wandb", "proj"]) == 0
    assert fake_wandb.steps("run-a") == [500, 1000]


def test_wandb_media_show_problems_first_with_the_prompt_as_caption(tmp_path, fake_wandb):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.6, failed={"t2a-2": "the waveform has NaN"})
    assert cli(["export", str(tmp_path / "results"), "--wandb", "proj", "--media", "1"]) == 0
    [(step, logged)] = next(iter(fake_wandb.runs.values()))["logged"]
    kind, path, caption = logged["t2a/t2a-2"]
    assert kind == "audio" and path.endswith("t2a-2.wav") and caption.startswith("prompt of t2a-2")
    assert "decode failed: the waveform has NaN" in caption and "t2a/t2a-0" not in logged
    assert logged["t2i/t2i-0"][2] == "prompt of t2i-0"


def test_wandb_refuses_a_checkpoint_without_a_step_unless_allowed(tmp_path, fake_wandb, capsys):
    write_checkpoint(tmp_path, "good", None, "run-a", end_rate=0.7)
    write_checkpoint(tmp_path, "deaf", None, "run-a", end_rate=0.3)
    assert cli(["export", str(tmp_path / "results"), "--wandb", "proj"]) == 1
    assert "--allow-no-step" in capsys.readouterr().err and not fake_wandb.runs
    for _ in range(2):
        assert cli(["export", str(tmp_path / "results"), "--wandb", "proj", "--allow-no-step"]) == 0
    assert fake_wandb.steps("run-a (by name order)") == [0, 1]
    [run] = fake_wandb.runs.values()
    assert [logged["checkpoint_name"] for _, logged in run["logged"]] == ["deaf", "good"]


def test_event_files_an_earlier_export_wrote_are_named_for_deletion(tmp_path, capsys):
    write_checkpoint(tmp_path, "checkpoint-500", 500, "run-a", end_rate=0.3)
    (tmp_path / "tb" / "run-a").mkdir(parents=True)
    (tmp_path / "tb" / "run-a" / "events.out.tfevents.1.host").write_bytes(b"")  # as mmgate before this version named them
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]) == 0
    out = capsys.readouterr().out
    assert "events.out.tfevents.1.host" in out and "delete them" in out


def test_by_name_positions_stay_in_name_order_when_a_checkpoint_is_added_later(tmp_path):
    write_checkpoint(tmp_path, "good", None, "run-a", end_rate=0.7)
    assert cli(["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb"), "--allow-no-step"]) == 0
    write_checkpoint(tmp_path, "deaf", None, "run-a", end_rate=0.3)
    assert cli(["export", str(tmp_path / "results/report/ckpt=deaf"), "--tensorboard", str(tmp_path / "tb"),
                "--allow-no-step"]) == 0
    by_name = tmp_path / "tb" / "run-a" / "by-name-order"
    assert [(e.step, e.value) for e in events(by_name).Scalars("P1.1/t2a/end_rate")] == [(0, pytest.approx(0.3)),
                                                                                        (1, pytest.approx(0.7))]
    assert text_at(by_name, 1).startswith("good:")
