"""Progress of long jobs in their rule's log: done / total, rate, ETA, a bounded number of lines."""

import logging
import re

import pytest

from mmgate.progress import Progress

LOG = logging.getLogger("test_progress")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOG.name]


# ------------------------------------------------------------------------------------ the throttle

def test_a_line_comes_after_the_first_batch_then_only_once_the_interval_has_passed(clock, caplog):
    caplog.set_level(logging.INFO)
    progress = Progress(100, "samples", LOG, interval=30.0, clock=clock)
    logged_at = []
    for t in (1, 10, 29, 31, 40, 60, 61, 62, 95):
        clock.now = t
        before = len(lines(caplog))
        progress.update(1)
        if len(lines(caplog)) > before:
            logged_at.append(t)
    assert logged_at == [1, 31, 61, 95]


def test_the_final_line_is_written_even_right_after_another(clock, caplog):
    caplog.set_level(logging.INFO)
    with Progress(10, "samples", LOG, interval=30.0, clock=clock) as progress:
        clock.now = 1
        progress.update(10)
        clock.now = 1.5
    assert len(lines(caplog)) == 2 and lines(caplog)[-1].startswith("progress: done, 10/10 samples in 2s")


def test_a_job_of_any_length_logs_a_bounded_number_of_lines(clock, caplog):
    from mmgate.progress import MAX_LINES

    caplog.set_level(logging.INFO)
    for interval in (30.0, 0.0):
        caplog.clear()
        with Progress(100_000, "samples", LOG, interval=interval, clock=clock) as progress:
            for _ in range(100_000):  # a sample every 31 s: 36 days, every update past the interval
                clock.now += 31
                progress.update(1)
                progress.beat("inside a sample")
        assert MAX_LINES // 2 <= len(lines(caplog)) <= 2 * MAX_LINES + 2, interval


def test_a_job_of_hours_logs_a_line_every_interval(clock, caplog):
    caplog.set_level(logging.INFO)
    with Progress(720, "samples", LOG, interval=30.0, clock=clock) as progress:
        for _ in range(720):  # a sample every 10 s: 2 hours
            clock.now += 10
            progress.update(1)
    assert len(lines(caplog)) == 240 + 1


def test_a_batch_slower_than_the_interval_logs_its_decoding_step(clock, caplog):
    import torch

    from mmgate.constrain import StepBeat

    caplog.set_level(logging.INFO)
    progress = Progress(64, "samples", LOG, interval=30.0, clock=clock)
    beat = StepBeat(progress, prompt_length=10, max_new_tokens=2000)
    for step in range(1, 2001):  # the first batch of 32: 2,000 steps of 0.1 s, 200 s without an update
        clock.now += 0.1
        beat(torch.zeros(32, 10 + step, dtype=torch.long), None)
    logged = lines(caplog)
    assert len(logged) == 6 and logged[0] == "progress: 0/64 samples (0 %), step 300/2000 of a batch of 32"


# ------------------------------------------------------------------------------------ what a line says

def test_a_line_gives_done_of_total_tokens_and_samples_per_second_and_the_eta(clock, caplog):
    caplog.set_level(logging.INFO)
    clock.now = 100.0
    progress = Progress(1000, "samples", LOG, label="generate (2 shards)", clock=clock)
    progress.at = "t2a/free 001"
    clock.now = 110.0
    progress.update(100, tokens=5000)
    assert lines(caplog) == ["generate (2 shards): 100/1,000 samples (10 %), 500 tokens/s, 10.0 samples/s, "
                             "ETA 1m30s, at t2a/free 001"]


def test_work_done_without_work_counts_as_done_but_not_in_the_rate(clock, caplog):
    caplog.set_level(logging.INFO)
    progress = Progress(1000, "sequences", LOG, label="ablate (3 shards)", clock=clock)
    progress.skip(500)  # a shard restored from an earlier attempt
    clock.now = 10.0
    progress.update(100)
    assert lines(caplog) == ["ablate (3 shards): 600/1,000 sequences (60 %), 10.0 sequences/s, ETA 40s"]


def test_the_rate_counts_from_start_not_from_before_the_model_load(clock, caplog):
    caplog.set_level(logging.INFO)
    progress = Progress(100, "samples", LOG, clock=clock)
    clock.now = 600.0  # ten minutes of loading
    progress.start()
    clock.now = 610.0
    progress.update(50)
    assert "5.0 samples/s, ETA 10s" in lines(caplog)[0]


def test_a_job_stopped_by_an_error_says_where(clock, caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError):
        with Progress(10, "samples", LOG, clock=clock) as progress:
            progress.at = "t2i/constrained 002"
            clock.now = 4
            progress.update(3)
            raise RuntimeError("CUDA out of memory")
    assert lines(caplog)[-1] == "progress: stopped by RuntimeError at 3/10 samples, in t2i/constrained 002 in 4s, 0.75 samples/s"


# ------------------------------------------------------------------------------ a real job, its log

@pytest.fixture(scope="module")
def base_job(mini_demo):
    from conftest import mini_shard_job

    return mini_shard_job(mini_demo, "golden_progress", per_task=6, samples_per_shard=3)


def job_log(tmp_path, name):
    """A logger writing to a file, as workflow/scripts' jobs write to their rule's log."""
    path = tmp_path / f"{name}.log"
    log = logging.getLogger(f"test_progress.job.{name}")
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log, handler, path


def test_a_generate_ablate_and_decode_block_log_their_progress_over_all_their_shards(base_job, tmp_path, capfd):
    from mmgate.ablation import AblationSettings
    from mmgate.blocks import Unit, run_decode_units, run_lm_units
    from mmgate.demo import DEFAULT_TEMPLATES
    from mmgate.generation import GenerationSettings

    def units_of(stage, mode=None):
        return [Unit(stage, "t2a", shard, mode) for shard in ("000", "001")]

    def work(units):
        return [(u, base_job.for_shard(u.task, int(u.shard), DEFAULT_TEMPLATES[u.task]), tmp_path / u.output("mini"))
                for u in units]

    log, handler, path = job_log(tmp_path, "blocks")
    try:
        generated = work(units_of("generate", "constrained"))
        run_lm_units(generated, GenerationSettings(batch_size=2), None, log, progress_interval=0)
        run_lm_units(work(units_of("ablate")), None, AblationSettings(batch_size=2), log, progress_interval=0)
        decoders = {"audio": {"backend": "plugin", "function": "mmgate.demo:tone_codec", "sample_rate": 24000,
                              "hop_length": 320, "n_codebooks": 4, "codebook_size": 1024}, "batch_size": 2}
        decode = [(u, job, out, tmp_path / u.output("mini"))
                  for u, (_, job, out) in zip(units_of("decode"), generated)]
        run_decode_units(decode, decoders, "cpu", log, progress_interval=0)
    finally:
        log.removeHandler(handler)
        handler.close()
    text = path.read_text()
    progress = re.findall(r"INFO ((?:generate|ablate|decode) \(2 shards\): .*)", text)
    steps = [line for line in progress if re.search(r"step \d+/\d+ of a batch of \d+$", line)]  # inside a batch
    assert steps and all(line.startswith("generate") for line in steps)
    progress = [line for line in progress if line not in steps]
    counts = {stage: [line.split(": ")[1].split(",")[0] for line in progress if line.startswith(stage)]
              for stage in ("generate", "ablate", "decode")}
    # one line per batch (interval 0) over both shards, then a final one: generation, 3 samples a shard in
    # batches of 2; ablation, 3 conditions of them; decoding, batches of equal length
    assert counts["generate"] == ["2/6 samples (33 %)", "3/6 samples (50 %)", "5/6 samples (83 %)", "6/6 samples (100 %)",
                                  "done"]
    assert counts["ablate"] == [f"{n}/18 sequences ({100 * n / 18:.0f} %)" for n in (2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
                                ] + ["done"]
    assert counts["decode"][-2:] == ["6/6 samples (100 %)", "done"] and len(counts["decode"]) >= 3
    assert re.search(r"generate \(2 shards\): 2/6 samples \(33 %\), [\d.,]+ tokens/s, [\d.,]+ samples/s, ETA [\dhms]+, "
                     r"at t2a/constrained 000", text)
    assert re.search(r"generate \(2 shards\): done, 6/6 samples in [\dhms]+, [\d.,]+ tokens/s", text)
    assert re.search(r"ablate \(2 shards\): 12/18 sequences \(67 %\), [\d.,]+ sequences/s, ETA [\dhms]+, at t2a 001", text)
    assert re.search(r"decode \(2 shards\): \d/6 samples \(\d+ %\), [\d.,]+ samples/s, ETA [\dhms]+, at t2a 000", text)
    assert re.search(r"decode \(2 shards\): done, 6/6 samples in [\dhms]+, [\d.,]+ samples/s", text)
    assert not re.search(r"generate t2a/\w+: +\d+%\|", capfd.readouterr().err)  # no more tqdm bar on stderr


def test_a_generate_block_of_one_shard_names_its_shard_and_writes_no_bar_to_stderr(base_job, tmp_path, caplog, capfd):
    from mmgate.blocks import Unit, run_lm_units
    from mmgate.demo import DEFAULT_TEMPLATES
    from mmgate.generation import GenerationSettings

    caplog.set_level(logging.INFO)
    unit = Unit("generate", "t2a", "001", "free")
    job = base_job.for_shard("t2a", 1, DEFAULT_TEMPLATES["t2a"])
    run_lm_units([(unit, job, tmp_path / unit.output("mini"))], GenerationSettings(batch_size=2), None, LOG,
                 progress_interval=0)
    progress = [m for m in lines(caplog) if m.startswith("generate t2a/free 001: ") and " of a batch of " not in m]
    assert [m.split(",")[0] for m in progress] == ["generate t2a/free 001: 2/3 samples (67 %)",
                                                   "generate t2a/free 001: 3/3 samples (100 %)",
                                                   "generate t2a/free 001: done"]
    assert not re.search(r"generate t2a/\w+: +\d+%\|", capfd.readouterr().err)
