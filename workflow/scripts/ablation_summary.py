"""Statistics of each task of one checkpoint over all its ablation shards."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import pandas as pd

from mmgate.ablation import AblationSettings, summarize
from mmgate.io import provenance, read_parquet, read_provenance, write_parquet
from mmgate.scripting import run
from mmgate.stages import STAGES


def main(smk, log):
    settings = AblationSettings.from_config(smk.params.settings)
    ckpt = smk.wildcards.ckpt
    for name, output in smk.output.items():
        task = name.removeprefix("summary_")
        shards = list(getattr(smk.input, f"shards_{task}"))
        frame = pd.concat([read_parquet(p) for p in shards], ignore_index=True)
        summary = summarize(frame, task, smk.params.min_n, settings.bootstrap_reps, settings.seed)
        for row in summary.itertuples():
            log.info("%s %s: N=%d delta %.3f [%.3f, %.3f], win rate %.2f [%.2f, %.2f]%s", task, row.condition, row.n,
                     row.delta, row.delta_ci_low, row.delta_ci_high, row.win_rate, row.win_rate_ci_low,
                     row.win_rate_ci_high, f" WARNING {row.warning}" if row.warning else "")
        token_space = read_provenance(shards[0]).get("token_space.sha256")
        write_parquet(summary, output, provenance("ablation_summary", token_space, checkpoint=ckpt, task=task,
                                                  shards=[str(p) for p in shards]), STAGES["ablation_summary"])


run(snakemake, main)
