"""Stage 4 with the HF Trainer and mmgate's callback, on the bundled demo (README: "From a training run to a report").

    python scripts/train_with_trainer.py --demo resources/demo --token-space runs/trainer/token_space.json \
        --out runs/trainer --steps 200 --save-steps 100

What a real run needs from mmgate is the `callbacks=[MMGateCallback(token_space)]` line: after
each save the callback writes the checkpoint's `token_space.sha256` and then, last, `COMPLETE`, so
`snakemake` picks a checkpoint up only once it is whole. One eval set per task makes the Trainer
log `eval_t2a_loss`, ... next to `loss` in `trainer_state.json`; the config maps those names to
mmgate's `t2a_avg`, ... (`report.training_log_columns`) for the training-dynamics gate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

from mmgate import demo
from mmgate.integrations import MMGateCallback
from mmgate.tasks import TASKS
from mmgate.templates import PromptTemplate
from mmgate.tokenspace import TokenSpace


def encoded(world: demo.SyntheticWorld, tokenizer, space: TokenSpace, tasks, n: int, seed: int) -> list[dict]:
    """`n` demo examples as the Trainer takes them: the loss is on the target only (labels -100 elsewhere)."""
    templates = {t: PromptTemplate(s, tokenizer, space.special_tokens, name=t) for t, s in demo.DEFAULT_TEMPLATES.items()}
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        context, target = demo.encode_training_example(world.sample(tasks[i % len(tasks)], rng), templates, tokenizer, space)
        rows.append({"input_ids": context + target, "labels": [-100] * len(context) + target})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default="resources/demo", help="the built demo (make demo): its Stage-3 init and tokenizer")
    parser.add_argument("--token-space", required=True, help="token_space.json the callback checks and hashes")
    parser.add_argument("--out", required=True, help="Trainer output_dir: checkpoint-N/ folders are saved here")
    parser.add_argument("--steps", type=int, default=200, help="training steps")
    parser.add_argument("--save-steps", type=int, default=100, help="a checkpoint every this many steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the LoRA init")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    stage3 = Path(args.demo, "stage3_init").resolve()  # absolute: the adapters record it as their base
    tokenizer = AutoTokenizer.from_pretrained(stage3)
    space = TokenSpace.load(args.token_space)
    world = demo.SyntheticWorld(space, seed=0)  # the demo's world: the same classes as its golden set
    model = AutoModelForCausalLM.from_pretrained(stage3, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM"))
    batch = 32
    training = TrainingArguments(
        output_dir=args.out, max_steps=args.steps, save_steps=args.save_steps, per_device_train_batch_size=batch,
        learning_rate=3e-3, warmup_steps=10, weight_decay=0.0, max_grad_norm=1.0, logging_steps=10,
        eval_strategy="steps", eval_steps=10, per_device_eval_batch_size=64, seed=args.seed,
        use_cpu=not torch.cuda.is_available(), report_to=[], disable_tqdm=True)
    trainer = Trainer(
        model=model, args=training, processing_class=tokenizer,
        train_dataset=encoded(world, tokenizer, space, TASKS, args.steps * batch, seed=args.seed + 1),
        eval_dataset={task: encoded(world, tokenizer, space, (task,), 64, seed=args.seed + 2) for task in TASKS},
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[MMGateCallback(args.token_space)],  # token_space.sha256, then COMPLETE, in each checkpoint
    )
    trainer.train()


if __name__ == "__main__":
    main()
