from pathlib import Path

import pytest
import yaml
from conftest import REPO

from mmgate.checkpoints import checkpoint_step, discover_checkpoints, trainer_step
from mmgate.config import load_config, validate_config
from mmgate.demo import DEFAULT_TEMPLATES
from mmgate.errors import CheckpointError, ConfigError


def demo_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_bundled_config_is_valid_and_gets_schema_defaults():
    config = load_config(REPO / "config" / "config.yaml")
    assert config["model"]["trust_remote_code"] is False
    assert config["sharding"]["samples_per_shard"] == 128


def test_real_model_example_config_is_valid():
    config = load_config(REPO / "config" / "examples" / "real-7b-lora.yaml")
    assert config["demo"]["build"] is False and config["checkpoint_glob"]


def test_full_checkpoint_multigpu_example_config_is_valid():
    config = load_config(REPO / "config" / "examples" / "anygpt-full-multigpu.yaml")
    assert config["model"]["device_map"] == "auto" and config["model"]["gpus"] == 2
    assert config["task_modalities"] == {"t2a": "music", "a2t": "music"}
    assert config["generation"]["samples_per_task"] == 64 and config["gates"]["min_n_generation"] == 64


def test_demo_config_templates_are_the_ones_the_demo_trained_with():
    assert demo_config()["templates"] == DEFAULT_TEMPLATES


def test_misspelled_key_is_named_with_the_allowed_keys():
    config = demo_config()
    config["model"]["dtyp"] = config["model"].pop("dtype")
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert "model: 'dtype' is a required property" in message
    assert "'dtyp' was unexpected" in message and "allowed keys here" in message


def test_bad_value_names_its_key_path():
    config = demo_config()
    config["sharding"]["samples_per_shard"] = 0
    with pytest.raises(ConfigError, match="sharding.samples_per_shard: 0 is less than the minimum of 1"):
        validate_config(config)


def test_nested_values_from_the_command_line_are_read_as_the_schema_types():
    """`--config sharding={shards_per_job: 4}` (or a profile's `config:`) hands Snakemake strings."""
    config = demo_config()
    config["sharding"] = {"samples_per_shard": "64", "shards_per_job": "4"}
    config["generation"].update({"temperature": "0.7", "restricted_head": "false", "samples_per_task": "null"})
    config["templates"]["t2a"] = "{bos}42<aud_start>"
    valid = validate_config(config)
    assert valid["sharding"] == {"samples_per_shard": 64, "shards_per_job": 4}
    assert (valid["generation"]["temperature"], valid["generation"]["restricted_head"]) == (0.7, False)
    assert valid["generation"]["samples_per_task"] is None and valid["templates"]["t2a"] == "{bos}42<aud_start>"


def test_a_string_that_is_not_the_schema_type_is_still_an_error():
    config = demo_config()
    config["sharding"]["shards_per_job"] = "four"
    with pytest.raises(ConfigError, match="sharding.shards_per_job: 'four' is not of type 'integer'"):
        validate_config(config)


def make_ckpt(root: Path, name: str, complete: bool) -> Path:
    path = root / name
    path.mkdir(parents=True)
    if complete:
        (path / "COMPLETE").write_text("")
    return path


def test_checkpoint_without_its_marker_is_not_picked_up(tmp_path):
    make_ckpt(tmp_path, "checkpoint-1000", complete=True)
    make_ckpt(tmp_path, "checkpoint-2000", complete=False)
    found = discover_checkpoints({}, str(tmp_path / "checkpoint-*"), "COMPLETE")
    assert list(found.checkpoints) == ["checkpoint-1000"]
    assert found.skipped == [("checkpoint-2000", str(tmp_path / "checkpoint-2000"), "incomplete")]


def test_explicit_map_and_glob_combine(tmp_path):
    explicit = {"init": str(make_ckpt(tmp_path / "other", "init", complete=True))}
    make_ckpt(tmp_path, "checkpoint-500", complete=True)
    found = discover_checkpoints(explicit, str(tmp_path / "checkpoint-*"), "COMPLETE")
    assert sorted(found.checkpoints) == ["checkpoint-500", "init"]


def test_explicit_checkpoint_that_does_not_exist_is_reported_missing(tmp_path):
    found = discover_checkpoints({"x": str(tmp_path / "nope")}, None, "COMPLETE")
    assert found.checkpoints == {} and found.skipped == [("x", str(tmp_path / "nope"), "missing")]


def test_a_key_given_twice_in_a_config_file_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("checkpoints:\n  mine: /a\n  mine: /b\n")
    with pytest.raises(ConfigError, match=r"mine.yaml, line 3: key 'mine' is given twice \(first on line 2\)"):
        load_config(path)


def test_decoder_settings_are_checked_against_the_token_space(mini_demo):
    from mmgate.decoders import decoder_config_problems

    config = demo_config()["decoders"]
    assert decoder_config_problems(config, mini_demo["space"]) == []
    bad = {**config, "audio": {**config["audio"], "n_codebooks": 8},
           "image": {"backend": "plugin", "function": "plugins.fake_seed:stripes"}}
    problems = decoder_config_problems(bad, mini_demo["space"])
    assert any("decoders.audio.n_codebooks = 8 but the token space's audio has 4" in p for p in problems)
    assert any("decoders.image.codebook_size = 0 is smaller than the token space's image codebook (512 codes)" in p
               for p in problems)


def test_two_checkpoints_with_one_name_is_an_error(tmp_path):
    a = make_ckpt(tmp_path / "a", "checkpoint-1", complete=True)
    make_ckpt(tmp_path / "b", "checkpoint-1", complete=True)
    with pytest.raises(CheckpointError, match="two checkpoints are named 'checkpoint-1'"):
        discover_checkpoints({"checkpoint-1": str(a)}, str(tmp_path / "b" / "checkpoint-*"), "COMPLETE")


@pytest.mark.parametrize("name,step", [("checkpoint-2000", 2000), ("ckpt_2000_v2", 2000), ("global_step500", 500),
                                       ("step-300", 300), ("iter_40", 40), ("Checkpoint2000", 2000)])
def test_checkpoint_step_is_the_number_after_a_step_word(name, step):
    assert checkpoint_step(name) == step


def test_checkpoint_step_is_the_only_number_of_a_name_without_a_step_word():
    assert checkpoint_step("run-1500") == 1500


def test_checkpoint_step_is_none_for_a_name_without_a_number():
    assert checkpoint_step("good") is None


@pytest.mark.parametrize("name", ["llama7b-2000", "run2-500"])
def test_checkpoint_step_is_none_for_a_name_with_two_numbers_and_no_step_word(name):
    assert checkpoint_step(name) is None


@pytest.mark.parametrize("name", ["lora-7b", "adapter_v2"])
def test_checkpoint_step_is_none_for_a_number_that_is_part_of_a_word(name):
    assert checkpoint_step(name) is None


def test_checkpoint_step_is_none_when_two_step_words_disagree():
    assert checkpoint_step("checkpoint-500-step-600") is None


def test_trainer_step_prefers_the_trainer_states_global_step(tmp_path):
    (tmp_path / "trainer_state.json").write_text('{"global_step": 2001}')
    assert trainer_step(tmp_path, "checkpoint-2000") == 2001


def test_trainer_step_falls_back_to_the_name_without_a_trainer_state(tmp_path):
    assert trainer_step(tmp_path, "checkpoint-2000") == 2000


SETTINGS_OF_SECTION = {
    "generation": "mmgate.generation:GenerationSettings",
    "ablation": "mmgate.ablation:AblationSettings",
    "fingerprint": "mmgate.fingerprint:FingerprintSettings",
    "gates": "mmgate.gates:Thresholds",
}


@pytest.mark.parametrize("section", sorted(SETTINGS_OF_SECTION))
def test_schema_defaults_are_the_settings_class_defaults(section):
    """One home for each default: the schema repeats the dataclass, key for key and value for value."""
    import dataclasses
    import importlib

    module, name = SETTINGS_OF_SECTION[section].split(":")
    cls = getattr(importlib.import_module(module), name)
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    properties = schema["properties"][section]["properties"]
    assert {f.name: f.default for f in dataclasses.fields(cls)} == {k: v["default"] for k, v in properties.items()}


def test_an_unknown_setting_reaching_a_settings_class_is_an_error():
    from mmgate.gates import Thresholds

    with pytest.raises(ConfigError) as err:
        Thresholds.from_config({"win_rate_shufled": 0.7})
    assert "gates: unknown setting(s) 'win_rate_shufled' (did you mean 'win_rate_shuffled'?)" in str(err.value)


def test_the_rules_take_their_tasks_from_the_tasks_module():
    import re

    from mmgate.tasks import TASKS

    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        assert not re.search("|".join(rf"\b{task}\b" for task in TASKS), rules.read_text()), rules.name


def test_sigterm_during_an_atomic_write_leaves_no_temporary_file(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "job.py"
    script.write_text(
        "import time, types\n"
        "from mmgate.io import atomic_path\n"
        "from mmgate.scripting import run\n"
        "def main(smk, log):\n"
        f"    with atomic_path({str(tmp_path / 'out.parquet')!r}) as tmp:\n"
        "        tmp.write_text('half')\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "run(types.SimpleNamespace(log=[], rule='job'), main)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.terminate()
    assert proc.wait(timeout=30) == 143
    time.sleep(0.1)
    assert list(tmp_path.glob(".*tmp")) == [] and not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("name, model_class", [("chameleon-like", None), ("emu3-like", None)])
def test_image_only_family_example_configs_are_valid(name, model_class):
    config = load_config(REPO / "config" / "examples" / f"{name}.yaml")
    assert set(config["templates"]) == {"t2i", "i2t"} and config["model"]["class"] is model_class


def test_a_model_class_is_accepted_in_the_model_section():
    config = demo_config()
    config["model"]["class"] = "ChameleonForConditionalGeneration"
    assert validate_config(config)["model"]["class"] == "ChameleonForConditionalGeneration"


def test_reordered_keys_an_explicit_default_and_an_integer_number_give_the_same_params():
    """Snakemake compares params by repr: a config that says the same thing must give the same repr."""
    written = demo_config()
    reordered = demo_config()
    reordered["generation"] = dict(reversed(list(reordered["generation"].items())))
    reordered["generation"]["temperature"] = 1  # the integer 1 for the number 1.0
    reordered["generation"]["removed_mass_every"] = 16  # a default written out
    a, b = validate_config(written), validate_config(reordered)
    assert repr(a["generation"]) == repr(b["generation"]) and repr(a["model"]) == repr(b["model"])


def test_the_checkpoints_keep_the_order_they_are_listed_in():
    config = demo_config()
    config["checkpoints"] = {"zeta": "a", "alpha": "b"}
    assert list(validate_config(config)["checkpoints"]) == ["zeta", "alpha"]


def test_a_checkpoint_folder_snakemake_cannot_carry_is_skipped_and_the_others_go_on(tmp_path):
    for name in ("checkpoint-1", "checkpoint-<b>", "checkpoint-{x}"):
        (tmp_path / name).mkdir()
    found = discover_checkpoints(None, str(tmp_path / "checkpoint-*"), None)
    assert list(found.checkpoints) == ["checkpoint-1"]
    assert sorted(reason for *_, reason in found.skipped) == ["unusable path", "unusable path"]
