"""Job glue: an mmgate error is one paragraph, and a retry in the same run does not repeat it."""

from types import SimpleNamespace

import pytest

from mmgate.errors import GoldenSetError
from mmgate.scripting import RUN_ID, run


def job(tmp_path):
    return SimpleNamespace(log=[str(tmp_path / "job.log")], rule="generate_block_000")


def failing(calls):
    def main(smk, log):
        calls.append(1)
        raise GoldenSetError("golden.parquet: sample_id 't2a-0001' appears twice")
    return main


def attempt(smk, main):
    with pytest.raises(SystemExit) as exit_:
        run(smk, main)
    return exit_.value.code


def test_a_retry_in_the_same_run_fails_at_once_with_the_first_attempts_message(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID, "run-1")
    calls = []
    assert attempt(job(tmp_path), failing(calls)) == 1
    assert attempt(job(tmp_path), failing(calls)) == 1
    assert len(calls) == 1  # the retry never reached the job's work
    text = (tmp_path / "job.log").read_text()
    assert "Not retried" in text and "'t2a-0001' appears twice" in text


def test_a_new_run_tries_the_job_again(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setenv(RUN_ID, "run-1")
    attempt(job(tmp_path), failing(calls))
    monkeypatch.setenv(RUN_ID, "run-2")
    attempt(job(tmp_path), failing(calls))
    assert len(calls) == 2


def test_an_unexpected_error_is_retried(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID, "run-1")
    calls = []

    def out_of_memory(smk, log):
        calls.append(1)
        raise RuntimeError("CUDA out of memory")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            run(job(tmp_path), out_of_memory)
    assert len(calls) == 2


def test_success_clears_the_record_of_an_earlier_failure(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID, "run-1")
    attempt(job(tmp_path), failing([]))
    monkeypatch.setenv(RUN_ID, "run-2")
    run(job(tmp_path), lambda smk, log: None)
    assert not list(tmp_path.glob("*.error.json"))
