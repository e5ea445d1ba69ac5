"""Training-loop hooks that make each saved checkpoint ready for mmgate as it is written.

`MMGateCallback` for an HF `transformers.Trainer`: before training it checks the run against
`token_space.json`; after each checkpoint save it writes the checkpoint's `token_space.sha256` and
then, last, the completion marker that `checkpoint_glob` discovery waits for, so a half-written
checkpoint never starts jobs. Usage::

    from mmgate.integrations import MMGateCallback

    trainer = Trainer(model=model, args=TrainingArguments(output_dir="/runs/stage4", save_steps=500, ...),
                      train_dataset=data, processing_class=tokenizer,
                      callbacks=[MMGateCallback("/data/stage2/token_space.json")])
    trainer.train()

with, in mmgate's config::

    checkpoint_glob: /runs/stage4/checkpoint-*
    completion_marker: COMPLETE
    report: {training_log: "{checkpoint_dir}/trainer_state.json"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import CheckpointError, TokenSpaceError, TokenSpaceMismatch
from .io import write_text
from .tokenspace import TokenSpace, sha256_file

HASH_FILE = "token_space.sha256"  # as mmgate.tokencheck reads it


def mark_complete(folder: str | Path, token_space_sha256: str, marker: str = "COMPLETE") -> None:
    """Write `folder`'s token_space.sha256, then its completion marker; each atomically, the marker last.

    For a model saved outside the Trainer's checkpoints, e.g. `trainer.save_model(final)` at the end.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint directory to mark complete; save the model there first.")
    write_text(folder / HASH_FILE, f"{token_space_sha256}  token_space.json\n")
    write_text(folder / marker, f"{folder.name}\n")  # last: discovery picks the checkpoint up from here on


def _vocabulary_length(processing_class: Any) -> int | None:
    """len() of the tokenizer, or of a multimodal processor's tokenizer; None for anything else."""
    tokenizer = processing_class if hasattr(processing_class, "convert_tokens_to_ids") else getattr(
        processing_class, "tokenizer", None)
    return len(tokenizer) if tokenizer is not None and hasattr(tokenizer, "__len__") else None


class MMGateCallback(TrainerCallback):
    """Checks the run against `token_space.json` before training and marks each saved checkpoint complete.

    `on_train_begin`: token_space.json must load (TokenSpace.load), and `len(tokenizer)` of the
    Trainer's tokenizer (`processing_class`, if any) and the model's input embedding rows must equal
    its vocab_size, as P0.1 will demand; else the run stops before training, not after hours of it.
    `on_save`: Trainer calls it after `_save_checkpoint` wrote the model, tokenizer and
    trainer_state.json to `<output_dir>/checkpoint-<global_step>`; the process that wrote them then
    writes token_space.sha256 and, last, `marker`.
    """

    def __init__(self, token_space: str | Path, marker: str = "COMPLETE") -> None:
        self.token_space = Path(token_space)
        self.marker = marker
        self.sha256: str | None = None  # of the token space the run was checked against

    def _load(self) -> TokenSpace:
        if not self.token_space.is_file():
            raise TokenSpaceError(
                f"{self.token_space}: no such file. MMGateCallback(token_space=...) must name the token_space.json "
                "that describes this run's tokenizer (the one mmgate's config names as `token_space`).")
        return TokenSpace.load(self.token_space)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        space = self._load()
        self.sha256 = space.sha256  # the checkpoints record what the run was checked against
        tokenizer = kwargs.get("processing_class")
        tokenizer = kwargs.get("tokenizer") if tokenizer is None else tokenizer
        length = _vocabulary_length(tokenizer) if tokenizer is not None else None
        if length is not None and length != space.vocab_size:
            raise TokenSpaceMismatch(
                f"{self.token_space}: vocab_size = {space.vocab_size}, but the Trainer's tokenizer (processing_class) "
                f"has len(tokenizer) = {length}. Train with the tokenizer token_space.json describes (the Stage-2 "
                "tokenizer), or regenerate token_space.json from this one; P0.1 would fail every checkpoint of this run.")
        model = kwargs.get("model")
        embedding = model.get_input_embeddings() if model is not None and hasattr(model, "get_input_embeddings") else None
        rows = getattr(embedding, "num_embeddings", None)  # not weight.shape: ZeRO-3 partitions the weight to [0]
        if isinstance(rows, int) and rows != space.vocab_size:
            raise TokenSpaceMismatch(
                f"{self.token_space}: vocab_size = {space.vocab_size}, but the model's input embedding has {rows} rows. "
                "Call model.resize_token_embeddings(len(tokenizer)) before training (and save the resized matrices: "
                "modules_to_save=['embed_tokens', 'lm_head'] for LoRA).")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # ranks that write shards (FSDP, ZeRO) must have finished before the marker says so
        if not args.should_save:  # the process that wrote trainer_state.json (world process zero by default)
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():
            raise CheckpointError(
                f"{folder}: MMGateCallback expected the checkpoint the Trainer just saved here (output_dir/"
                f"{PREFIX_CHECKPOINT_DIR}-<global_step>) but it does not exist; it is not marked complete. A "
                "hyperparameter search saves under output_dir/run-<trial>/: mark those with mmgate.integrations."
                "mark_complete.")
        mark_complete(folder, self.sha256 or sha256_file(self.token_space), self.marker)
