"""The whole workflow on tiny Gemma2 (soft-capped logits), Chameleon (a class that suppresses its image
ids) and padded-vocabulary Qwen2 LoRA checkpoints: every stage runs, and the numbers in the parquet
are the model's own."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, snakemake, stage2_shard

from families import build
from mmgate.io import read_parquet, write_parquet

FAMILY_RUN = ("gemma2", "chameleon", "qwen2_padded")
PER_TASK = 8


@pytest.fixture(scope="module")
def family_run(tmp_path_factory, mini_demo):
    from mmgate import demo

    root = tmp_path_factory.mktemp("family_run")
    space = mini_demo["space"]
    checkpoints = {name: str(build(name, root / "ckpts", mini_demo["tokenizer"], space, seed=i)["lora"])
                   for i, name in enumerate(FAMILY_RUN)}
    golden = demo.golden_frame(demo.SyntheticWorld(space, seed=0), PER_TASK, seed=1)
    write_parquet(golden, root / "golden.parquet", {})
    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = {"token_space": str(mini_demo["root"] / "token_space.json"), "golden_set": str(root / "golden.parquet"),
              "checkpoints": checkpoints, "completion_marker": None,
              "stage2": {"shards": [stage2_shard(mini_demo, root / "stage2.parquet")]}, "stage3_init": None,
              "model": {"base": None, "dtype": "float32"}, "templates": bundled["templates"],
              "decoders": bundled["decoders"], "gates": {"min_n": PER_TASK},
              "sharding": {"samples_per_shard": PER_TASK, "shards_per_job": 4}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("--cores", "2", "-d", str(root / "run"), "--configfile", str(root / "config.yaml"), timeout=1200)
    return {"run": root / "run", "checkpoints": checkpoints, "proc": proc, "config": config}


def report(family_run, name):
    return json.loads((family_run["run"] / f"results/report/ckpt={name}/gates.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name, model_class", [("gemma2", "Gemma2ForCausalLM"),
                                               ("chameleon", "ChameleonForConditionalGeneration"),
                                               ("qwen2_padded", "Qwen2ForCausalLM")])
def test_every_stage_runs_and_the_report_names_the_class(family_run, name, model_class):
    gates = report(family_run, name)
    assert {g["gate"] for g in gates["gates"]} >= {"P0.1", "P0.2", "P0.3", "P0.4", "P1.1", "P1.2", "P1.3"}
    assert all(g["verdict"] != "SKIP" for g in gates["gates"] if g["gate"] != "TD")
    model = gates["provenance"]["model"]
    assert model["model_class"] == model_class and model["head_path"].startswith("head path")
    page = (family_run["run"] / f"results/report/ckpt={name}/report.html").read_text()
    assert model_class in page


@pytest.mark.slow
def test_the_report_says_chameleons_suppressed_ids_are_scored_with_its_own_head(family_run):
    model = report(family_run, "chameleon")["provenance"]["model"]
    assert model["suppressed_ids"] == 512 and "suppresses 512 ids" in model["head_check"]
    assert report(family_run, "gemma2")["provenance"]["model"]["logit_processing"] == "soft-cap 30"


@pytest.mark.slow
def test_a_padded_vocabulary_passes_p01_with_its_pad_rows_reported(family_run, mini_demo):
    check = read_parquet(family_run["run"] / "results/token_space/ckpt=qwen2_padded/check.parquet")
    assert check["match"].all()
    rows = check[check["kind"] == "model"]["detail"].str.cat(sep=" | ")
    assert f"pad rows beyond vocab_size {len(mini_demo['tokenizer'])}" in rows


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_RUN)
@pytest.mark.parametrize("task", ["t2i", "i2t"])
def test_ablation_losses_are_the_models_own_cross_entropy(family_run, mini_demo, name, task):
    """Each example's correct-condition loss, recomputed here from the class's own forward (Chameleon's
    without its image suppression), to 1e-4."""
    from test_families import unsuppressed

    from mmgate.ablation import build_conditions
    from mmgate.golden import load_golden
    from mmgate.loading import load_model
    from mmgate.templates import PromptTemplate

    space, tokenizer = mini_demo["space"], mini_demo["tokenizer"]
    golden = load_golden(family_run["config"]["golden_set"], space)
    rows = golden[golden["task"] == task].sort_values("sample_id").reset_index(drop=True)
    template = PromptTemplate(family_run["config"]["templates"][task], tokenizer, space.special_tokens, name=task)
    correct = build_conditions(rows, task, template, tokenizer, space)["correct"]
    scored = read_parquet(family_run["run"] / f"results/ablate/ckpt={name}/task={task}/part-000.parquet")
    scored = scored[scored["condition"] == "correct"].set_index("sample_id")
    model = load_model(family_run["checkpoints"][name])[0]
    for sample_id, item in list(zip(rows["sample_id"], correct))[:3]:
        ids = torch.tensor([item.context + item.target])
        with torch.inference_mode(), unsuppressed(model):
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        start = len(item.context)
        own = -log_probs[torch.arange(start - 1, ids.shape[1] - 1), ids[0, start:]].mean()
        assert abs(float(scored.loc[sample_id, "loss"]) - float(own)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_RUN)
def test_constrained_generation_stays_in_the_modality(family_run, name):
    for task in ("t2a", "t2i"):
        frame = read_parquet(family_run["run"] / f"results/generate/ckpt={name}/task={task}/mode=constrained/part-000.parquet")
        assert len(frame) == PER_TASK
        assert frame["out_of_range"].sum() == 0 and frame["wrong_slot"].sum() == 0
        assert np.isfinite(frame["removed_mass_mean"]).any()


@pytest.fixture(scope="module")
def image_only_run(family_run, tmp_path_factory, mini_demo):
    """A Chameleon-like model that writes and reads images only: its token space has no audio, its golden
    set and templates only t2i and i2t (config/examples/chameleon-like.yaml)."""
    import shutil

    from mmgate import demo
    from mmgate.templates import PromptTemplate
    from mmgate.tokenspace import TokenSpace

    root = tmp_path_factory.mktemp("image_only")
    spec = json.loads((mini_demo["root"] / "token_space.json").read_text())
    del spec["modalities"]["audio"]
    spec["ranges"] = {"IMAGE": spec["ranges"]["IMAGE"]}
    (root / "token_space.json").write_text(json.dumps(spec))
    space, tokenizer = TokenSpace.load(root / "token_space.json"), mini_demo["tokenizer"]
    ckpt = root / "chameleon"
    shutil.copytree(family_run["checkpoints"]["chameleon"], ckpt)
    (ckpt / "token_space.sha256").write_text(space.sha256 + "\n")
    world = demo.SyntheticWorld(mini_demo["space"], seed=0)
    golden = demo.golden_frame(world, PER_TASK, seed=1)
    write_parquet(golden[golden["task"].isin(["t2i", "i2t"])].reset_index(drop=True), root / "golden.parquet", {})
    templates = {t: family_run["config"]["templates"][t] for t in ("t2i", "i2t")}
    encoders = {t: PromptTemplate(s, tokenizer, space.special_tokens, name=t) for t, s in templates.items()}
    rng = np.random.default_rng(0)
    demo.write_stage2_shard(root / "stage2.parquet", [world.sample(t, rng) for t in ("t2i", "i2t")], encoders,
                            tokenizer, space, space.sha256, 0, "s2")
    config = {**family_run["config"], "token_space": str(root / "token_space.json"),
              "golden_set": str(root / "golden.parquet"), "checkpoints": {"chameleon": str(ckpt)},
              "stage2": {"shards": [str(root / "stage2.parquet")]}, "templates": templates,
              "decoders": {"image": family_run["config"]["decoders"]["image"]}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root, snakemake("--cores", "2", "-d", str(root / "run"), "--configfile", str(root / "config.yaml"),
                           timeout=1200)


@pytest.mark.slow
def test_an_image_only_model_is_verified_with_image_templates_alone(image_only_run):
    root, _ = image_only_run
    gates = json.loads((root / "run/results/report/ckpt=chameleon/gates.json").read_text())
    decided = {g["gate"]: g for g in gates["gates"]}
    assert decided["P0.1"]["verdict"] == "PASS" and decided["P0.3"]["verdict"] != "SKIP"
    assert gates["provenance"]["golden_n"] == {"i2t": PER_TASK, "t2i": PER_TASK}
    assert not list((root / "run/results/generate/ckpt=chameleon").glob("task=t2a"))


@pytest.mark.slow
def test_a_task_in_the_golden_set_without_a_template_is_an_error_before_any_job(image_only_run):
    root, _ = image_only_run
    config = yaml.safe_load((root / "config.yaml").read_text())
    del config["templates"]["i2t"]
    (root / "no_i2t.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "-d", str(root / "run"), "--configfile", str(root / "no_i2t.yaml"), check=False)
    assert proc.returncode != 0
    assert f"has {PER_TASK} i2t rows but `templates` has no i2t" in proc.stdout + proc.stderr
