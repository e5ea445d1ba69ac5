"""The README's "From a training run to a report", run exactly as written on the built demo."""

import json
import os
import re
import subprocess

import pytest
from conftest import BIN, REPO

from mmgate.io import read_parquet

WALKTHROUGH = re.compile(r"<!-- walkthrough -->\s*```bash\n(.*?)```", re.S)


def readme_walkthrough() -> str:
    found = WALKTHROUGH.search((REPO / "README.md").read_text())
    assert found, "README.md lost its <!-- walkthrough --> bash block"
    return found.group(1)


@pytest.fixture(scope="module")
def walkthrough(demo_workdir, tmp_path_factory):
    """A checkout (links to this one) with the built demo in resources/demo, where the block runs in bash -e."""
    root = tmp_path_factory.mktemp("walkthrough")
    for name in ("Snakefile", "workflow", "src", "config", "scripts", "profiles", "envs"):
        (root / name).symlink_to(REPO / name)
    (root / "resources").mkdir()
    (root / "resources" / "demo").symlink_to(demo_workdir / "resources" / "demo")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_walkthrough()], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"the README walkthrough failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return root, proc.stdout


def reports(root):
    return {p.parent.name.removeprefix("ckpt="): json.loads(p.read_text()) for p in root.glob("results/report/ckpt=*/gates.json")}


@pytest.mark.slow
def test_each_trainer_checkpoint_gets_a_report_at_its_trainer_step(walkthrough):
    root, _ = walkthrough
    assert {name: report["step"] for name, report in reports(root).items()} == {"checkpoint-30": 30, "checkpoint-60": 60}


@pytest.mark.slow
def test_generation_uses_its_subset_and_ablation_every_golden_row(walkthrough):
    root, _ = walkthrough
    provenance = reports(root)["checkpoint-60"]["provenance"]
    assert provenance["generation_n"] == {"t2a": 32, "t2i": 32}
    assert provenance["golden_n"] == {"a2t": 256, "i2t": 256, "t2a": 256, "t2i": 256}
    generated = read_parquet(root / "results/generate/ckpt=checkpoint-60/task=t2a/mode=free/part-000.parquet")
    scored = read_parquet(root / "results/ablation_summary/ckpt=checkpoint-60/task=t2a/summary.parquet")
    assert len(generated) == 32 and int(scored["n"].iloc[0]) == 256


@pytest.mark.slow
def test_training_dynamics_read_the_trainers_per_task_eval_losses(walkthrough):
    root, _ = walkthrough
    dynamics = {row["metric"]: row for row in reports(root)["checkpoint-60"]["training_dynamics"]}
    assert {"t2a_avg", "t2i_avg", "a2t_avg", "i2t_avg"} <= set(dynamics)
    assert dynamics["t2a_avg"]["last"] < dynamics["t2a_avg"]["first"]  # the eval loss the Trainer logged, falling


@pytest.mark.slow
def test_inspect_lists_the_checkpoints_by_step_with_both_sample_sizes(walkthrough):
    _, out = walkthrough
    assert out.index("checkpoint-30") < out.index("checkpoint-60")
    assert "generated t2a 32, t2i 32; scored a2t 256, i2t 256, t2a 256, t2i 256" in out


@pytest.mark.slow
def test_the_html_report_states_both_sample_sizes(walkthrough):
    root, _ = walkthrough
    page = (root / "results/report/ckpt=checkpoint-60/report.html").read_text()
    assert "<dd>generated t2a 32, t2i 32; scored a2t 256" in page
