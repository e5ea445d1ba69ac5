"""MMGateCallback in a real transformers.Trainer run on the tiny demo model (CPU, seconds)."""

import json

import pytest

from mmgate import integrations
from mmgate.checkpoints import discover_checkpoints, trainer_step
from mmgate.config import load_schema
from mmgate.errors import ConfigError, TokenSpaceError, TokenSpaceMismatch
from mmgate.integrations import MMGateCallback
from mmgate.training import LOG_COLUMNS, read_training_log


def trainer(mini_demo, out, callback, lora=False, tokenizer=None, embedding_rows=None):
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(mini_demo["stage3"])
    if embedding_rows:
        model.resize_token_embeddings(embedding_rows)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"],
                                                 task_type="CAUSAL_LM"))
    ids = mini_demo["tokenizer"]("<bos> a red circle <img_start> <img_1> <img_2> <img_end>")["input_ids"]
    data = [{"input_ids": ids, "labels": ids}] * 8
    args = TrainingArguments(output_dir=str(out), max_steps=4, save_steps=2, eval_strategy="steps", eval_steps=2,
                             logging_steps=1, per_device_train_batch_size=2, per_device_eval_batch_size=4,
                             report_to=[], use_cpu=True, disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:4],
                   processing_class=tokenizer or mini_demo["tokenizer"], callbacks=[callback])


@pytest.fixture(scope="module", params=[False, True], ids=["full", "lora"])
def trained(request, mini_demo, tmp_path_factory):
    """A finished 4-step run saving every 2 steps, and what the checkpoint folder held at each mmgate write."""
    writes = []
    real_write = integrations.write_text

    def recording(path, text):
        writes.append((path.parent.name, path.name, sorted(p.name for p in path.parent.iterdir())))
        real_write(path, text)

    out = tmp_path_factory.mktemp("trainer") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(integrations, "write_text", recording)
        trainer(mini_demo, out, MMGateCallback(mini_demo["root"] / "token_space.json"), lora=request.param).train()
    return out, writes


def test_every_saved_checkpoint_gets_the_token_space_hash(trained, mini_demo):
    out, _ = trained
    for step in (2, 4):
        text = (out / f"checkpoint-{step}" / "token_space.sha256").read_text()
        assert text == f"{mini_demo['space'].sha256}  token_space.json\n"


def test_the_marker_is_written_last(trained):
    out, writes = trained
    assert [(folder, name) for folder, name, _ in writes] == [
        ("checkpoint-2", "token_space.sha256"), ("checkpoint-2", "COMPLETE"),
        ("checkpoint-4", "token_space.sha256"), ("checkpoint-4", "COMPLETE")]
    for folder, name, present in writes:
        if name == "COMPLETE":  # everything the checkpoint holds was there before the marker
            final = sorted(p.name for p in (out / folder).iterdir())
            assert present == [f for f in final if f != "COMPLETE"]
            assert {"trainer_state.json", "token_space.sha256", "tokenizer.json"} <= set(present)
            mtime = {f: (out / folder / f).stat().st_mtime_ns for f in final}
            assert mtime["COMPLETE"] >= max(mtime.values())


def test_discovery_finds_the_marked_checkpoints_at_their_trainer_steps(trained):
    out, _ = trained
    found = discover_checkpoints(None, f"{out}/checkpoint-*", "COMPLETE")
    assert sorted(found.checkpoints) == ["checkpoint-2", "checkpoint-4"] and found.skipped == []
    assert [trainer_step(found.checkpoints[n], n) for n in ("checkpoint-2", "checkpoint-4")] == [2, 4]


def test_the_trainer_state_log_reads_with_a_column_mapping(trained):
    out, _ = trained
    log = read_training_log(out / "checkpoint-4" / "trainer_state.json", {"t2a_avg": "eval_loss", "a2t_avg": "loss"})
    assert log["step"].tolist() == [1, 2, 3, 4]
    assert log["t2a_avg"].notna().tolist() == [False, True, False, True] and log["a2t_avg"].notna().all()


def test_a_tokenizer_the_token_space_does_not_describe_stops_training_before_it_starts(mini_demo, tmp_path):
    import copy

    tokenizer = copy.deepcopy(mini_demo["tokenizer"])
    tokenizer.add_tokens(["<extra_code>"])
    run = trainer(mini_demo, tmp_path / "run", MMGateCallback(mini_demo["root"] / "token_space.json"), tokenizer=tokenizer)
    with pytest.raises(TokenSpaceMismatch, match=rf"vocab_size = {len(tokenizer) - 1}, but the Trainer's tokenizer "
                                                 rf"\(processing_class\) has len\(tokenizer\) = {len(tokenizer)}"):
        run.train()
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_a_model_not_resized_to_the_token_space_stops_training_before_it_starts(mini_demo, tmp_path):
    rows = mini_demo["space"].vocab_size + 8
    run = trainer(mini_demo, tmp_path / "run", MMGateCallback(mini_demo["root"] / "token_space.json"), embedding_rows=rows)
    with pytest.raises(TokenSpaceMismatch, match=rf"but the model's input embedding has {rows} rows. Call "
                                                 r"model.resize_token_embeddings\(len\(tokenizer\)\)"):
        run.train()


def test_a_missing_token_space_stops_training_before_it_starts(mini_demo, tmp_path):
    run = trainer(mini_demo, tmp_path / "run", MMGateCallback(tmp_path / "token_space.json"))
    with pytest.raises(TokenSpaceError, match=r"token_space.json: no such file. MMGateCallback\(token_space=...\)"):
        run.train()
    assert not list((tmp_path / "run").glob("checkpoint-*"))


# Training log column mapping (report.training_log_columns) -----------------------------------------

def write_log(tmp_path, history):
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 100, "log_history": history}))
    return path


def test_a_mapped_column_the_log_lacks_names_the_file_the_name_and_the_columns_it_has(tmp_path):
    path = write_log(tmp_path, [{"step": 50, "loss": 3.0}])
    with pytest.raises(ConfigError) as err:
        read_training_log(path, {"t2a_avg": "eval_t2a_loss"})
    assert str(err.value).startswith(f"{path}: report.training_log_columns maps t2a_avg: 'eval_t2a_loss', but this log "
                                     "has no such column. Its columns: ['loss', 'step'].")


def test_a_mapping_may_name_the_step_column(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("iteration,t2a\n10,9.0\n20,8.0\n")
    log = read_training_log(path, {"step": "iteration", "t2a_avg": "t2a"})
    assert log["step"].tolist() == [10, 20] and log["t2a_avg"].tolist() == [9.0, 8.0]


def test_an_unknown_mmgate_name_in_the_mapping_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown mmgate name\(s\) \['t2a_loss'\]"):
        read_training_log(write_log(tmp_path, [{"step": 50, "loss": 3.0}]), {"t2a_loss": "loss"})


def test_the_schema_allows_exactly_the_names_the_mapping_reads():
    schema = load_schema()  # the loss columns' keys come from mmgate.tasks
    columns = schema["properties"]["report"]["properties"]["training_log_columns"]
    assert set(columns["properties"]) == set(LOG_COLUMNS) and columns["default"] == {}


def test_a_checkpoint_dir_setting_reads_the_checkpoints_own_trainer_state(tmp_path):
    from mmgate.training import training_log_path

    write_log(tmp_path, [{"step": 50, "loss": 3.0}])
    path = training_log_path("{checkpoint_dir}/trainer_state.json", tmp_path)
    assert path == tmp_path / "trainer_state.json" and read_training_log(path)["step"].tolist() == [50]


def test_no_training_log_setting_is_no_path(tmp_path):
    from mmgate.training import training_log_path

    assert training_log_path(None, tmp_path) is None
