import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmgate.tokenspace import TokenSpace

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = REPO / "config" / "config.yaml"


def snakemake(*args, cwd=REPO, check=True, timeout=1800, snakefile=REPO / "Snakefile", env=None):
    import os

    cmd = [str(BIN / "snakemake"), "--snakefile", str(snakefile), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


ZOO_CONFIG = REPO / "config" / "examples" / "fault-zoo.yaml"
TEST_PER_TASK = 32  # golden examples per task in the suite's end-to-end run (the README's demo: 256)


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory):
    """The README's demo, run by Snakemake in a fresh working directory (builds and trains the demo).
    MMGATE_TEST_DEMO_RUN=<dir> reuses one this fixture made (the tests that write copy it first)."""
    import os

    if os.environ.get("MMGATE_TEST_DEMO_RUN"):
        return Path(os.environ["MMGATE_TEST_DEMO_RUN"])
    workdir = tmp_path_factory.mktemp("demo_run")
    snakemake("check_token_space", "--cores", "2", "-d", str(workdir), "--configfile", str(CONFIG))
    return workdir


def golden_subset(source: Path, target: Path, per_task: int) -> Path:
    """The first `per_task` golden examples of each task (by sample_id), as a golden set of its own."""
    from mmgate.golden import read_golden
    from mmgate.io import write_parquet

    golden = read_golden(source).sort_values("sample_id", kind="stable")
    write_parquet(golden.groupby("task").head(per_task).reset_index(drop=True), target, {})
    return target


@pytest.fixture(scope="session")
def zoo_run(request):
    """The demo and the fault zoo, every stage of every checkpoint, in the demo's working directory,
    on the first TEST_PER_TASK golden examples per task (and `gates.min_n` set to that): what
    `snakemake --configfile config/config.yaml config/examples/fault-zoo.yaml` does, at an eighth of
    the samples so that the suite stays quick, each checkpoint's 4 generation and 4 ablation shards in one job each
    (sharding.shards_per_job; the demo and walkthrough run the default 4, the cluster's incremental tests one per shard). MMGATE_TEST_ZOO_RUN=<dir> reuses such a finished run
    (made by this fixture) while working on the tests that read it."""
    import os

    if os.environ.get("MMGATE_TEST_ZOO_RUN"):
        return Path(os.environ["MMGATE_TEST_ZOO_RUN"])
    demo_workdir = request.getfixturevalue("demo_workdir")
    golden = golden_subset(demo_workdir / "resources/demo/golden.parquet", demo_workdir / "golden-test.parquet", TEST_PER_TASK)
    overrides = demo_workdir / "test-overrides.yaml"
    overrides.write_text(json.dumps({"golden_set": str(golden), "gates": {"min_n": TEST_PER_TASK},
                                     "sharding": {"samples_per_shard": TEST_PER_TASK, "shards_per_job": 8}}))
    proc = snakemake("--cores", "2", "-d", str(demo_workdir), "--configfile", str(CONFIG), str(ZOO_CONFIG), str(overrides))
    (demo_workdir / "snakemake.stderr").write_text(proc.stderr)  # what the run printed last, for the tests
    return demo_workdir


def small_spec(layout: str = "frame_major") -> dict:
    """A 40-id vocabulary: 5 specials, 2 audio codebooks of 4 codes, an image range of 6."""
    return {
        "vocab_size": 40,
        "special_tokens": {"<aud_start>": 30, "<aud_end>": 31, "<img_start>": 32, "<img_end>": 33, "<pad_mm>": 34},
        "ranges": {"AUDIO_CB0": [10, 14], "AUDIO_CB1": [14, 18], "IMAGE": [20, 26]},
        "modalities": {
            "audio": {
                "ranges": ["AUDIO_CB0", "AUDIO_CB1"],
                "start_token": "<aud_start>",
                "end_token": "<aud_end>",
                "pad_token": "<pad_mm>",
                "layout": layout,
                "codec": {"codebook_size": 4, "n_codebooks": 2},
            },
            "image": {"ranges": ["IMAGE"], "start_token": "<img_start>", "end_token": "<img_end>"},
        },
    }


def two_audio_spec(music_codebooks=2):
    """small_spec's audio (speech, say) and a second audio modality, music, of 2-code codebooks from id 40."""
    spec = small_spec()
    spec["vocab_size"] = 40 + 2 * music_codebooks
    spec["special_tokens"].update({"<mus_start>": 35, "<mus_end>": 36})
    names = [f"MUSIC_CB{k}" for k in range(music_codebooks)]
    spec["ranges"].update({name: [40 + 2 * k, 42 + 2 * k] for k, name in enumerate(names)})
    spec["modalities"]["music"] = {"ranges": names, "start_token": "<mus_start>", "end_token": "<mus_end>"}
    return spec


def write_space(tmp_path: Path, spec: dict, name: str = "token_space.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def spec():
    return small_spec()


@pytest.fixture
def space(tmp_path):
    return TokenSpace.load(write_space(tmp_path, small_spec()))


@pytest.fixture(scope="session")
def mini_demo(tmp_path_factory):
    """Demo tokenizer and token space, a tiny Stage-3 base and a barely trained LoRA checkpoint (seconds)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mmgate import demo
    from mmgate.io import write_text

    root = tmp_path_factory.mktemp("mini_demo")
    tokenizer = demo.build_tokenizer()
    write_text(root / "token_space.json", json.dumps(demo.token_space_spec(tokenizer)))
    space = TokenSpace.load(root / "token_space.json")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(demo.tiny_llama_config(len(tokenizer)))
    base.save_pretrained(root / "stage3")
    tokenizer.save_pretrained(root / "stage3")  # the Stage-3 init's tokenizer: P0.1's reference id-to-token table
    (root / "stage3" / "token_space.sha256").write_text(space.sha256 + "\n")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(root / "stage3"),
        LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():  # a step of training: an adapter still at its init is a no-op, which P0.1 fails
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.01)
    model.save_pretrained(root / "ckpt")
    tokenizer.save_pretrained(root / "ckpt")
    (root / "ckpt" / "token_space.sha256").write_text(f"{space.sha256}  token_space.json\n")
    return {"root": root, "space": space, "tokenizer": tokenizer, "stage3": root / "stage3", "ckpt": root / "ckpt"}


@pytest.fixture
def user_config(mini_demo, tmp_path):
    """A user's own config (not the demo's): one checkpoint `mine`, a small golden set, no demo."""
    import yaml

    from mmgate import demo
    from mmgate.io import write_parquet

    golden = demo.golden_frame(demo.SyntheticWorld(mini_demo["space"], seed=0), 8, seed=1)
    write_parquet(golden, tmp_path / "golden.parquet", {})
    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = {"token_space": str(mini_demo["root"] / "token_space.json"), "golden_set": str(tmp_path / "golden.parquet"),
              "checkpoints": {"mine": str(mini_demo["ckpt"])}, "completion_marker": None,
              "stage2": {"shards": []}, "stage3_init": None, "model": {"base": str(mini_demo["stage3"]), "dtype": "float32"},
              "templates": bundled["templates"], "decoders": bundled["decoders"]}

    def write(**changes):
        path = tmp_path / "mine.yaml"
        path.write_text(yaml.safe_dump({**config, **changes}))
        return path

    return write


def stage2_shard(mini_demo, path):
    """A Stage-2 shard tokenized with the mini demo's tokenizer, so that its checkpoint passes P0.1."""
    import numpy as np

    from mmgate import demo
    from mmgate.templates import PromptTemplate

    space, tokenizer = mini_demo["space"], mini_demo["tokenizer"]
    world, rng = demo.SyntheticWorld(space, seed=0), np.random.default_rng(0)
    templates = {t: PromptTemplate(s, tokenizer, space.special_tokens, name=t) for t, s in demo.DEFAULT_TEMPLATES.items()}
    examples = [world.sample(task, rng) for task in ("t2a", "t2i", "a2t", "i2t")]
    demo.write_stage2_shard(path, examples, templates, tokenizer, space, space.sha256, 0, "s2")
    return str(path)


def mini_shard_job(mini_demo, name: str, per_task: int, samples_per_shard: int):
    """A t2a ShardJob of the mini demo's LoRA checkpoint over a golden set of its own (`name`.parquet)."""
    from mmgate.demo import SyntheticWorld, golden_frame
    from mmgate.io import write_parquet
    from mmgate.shardjob import ShardJob

    golden = mini_demo["root"] / f"{name}.parquet"
    write_parquet(golden_frame(SyntheticWorld(mini_demo["space"]), per_task=per_task, seed=3), golden, {})
    return ShardJob.from_files(mini_demo["root"] / "token_space.json", golden, checkpoint="mini", task="t2a", shard=0,
                               samples_per_shard=samples_per_shard, ckpt_dir=str(mini_demo["ckpt"]),
                               model_config={"base": str(mini_demo["stage3"]), "dtype": "float32", "device": "cpu"})


def browsing_problems(results: Path) -> list[str]:
    """What a user browsing `results` would trip on, per folder of the catalogue (mmgate.stages): a file
    that is not a parquet of the stage, a file whose schema is not its stage's, or a reader (pandas,
    DuckDB with hive partitioning) that does not return exactly the rows of the folder's files."""
    import duckdb
    import pandas as pd
    import pyarrow.parquet as pq

    from mmgate.stages import STAGES

    problems = []
    for stage in STAGES.values():
        folder = results / stage.folder
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        problems += [f"{p}: not a file of {stage.name}" for p in files if stage.parse(p) is None]
        rows = 0
        for path in (p for p in files if stage.parse(p) is not None):
            schema = pq.read_schema(path)
            if not schema.remove_metadata().equals(stage.schema):
                problems.append(f"{path}: schema {schema.names} is not {stage.name}'s {list(stage.columns)}")
            rows += pq.read_metadata(path).num_rows
        try:
            frame = pd.read_parquet(folder)
        except Exception as err:  # pyarrow's errors, and pandas' own
            problems.append(f"pandas cannot read {folder}: {type(err).__name__}: {err}")
            continue
        if len(frame) != rows:
            problems.append(f"pandas reads {len(frame)} rows from {folder}, its files hold {rows}")
        if set(stage.keys) - {"shard"} - set(frame.columns):
            problems.append(f"pandas reads no partition column(s) {set(stage.keys) - {'shard'} - set(frame.columns)} from {folder}")
        glob = f"{folder}/**/*.parquet" if "/" in stage.file else f"{folder}/*.parquet"
        table = f"read_parquet('{glob}', hive_partitioning = true)"  # the README's query, without union_by_name
        try:
            counted = duckdb.sql(f"select count(*) from {table}").fetchall()[0][0]
            columns = duckdb.sql(f"select * from {table} limit 0").columns
        except duckdb.Error as err:
            problems.append(f"DuckDB cannot read {glob}: {err}")
            continue
        if counted != rows:
            problems.append(f"DuckDB counts {counted} rows in {glob}, its files hold {rows}")
        if not set(stage.columns) <= set(columns):
            problems.append(f"DuckDB reads {columns} from {glob}, missing {sorted(set(stage.columns) - set(columns))}")
    return problems
