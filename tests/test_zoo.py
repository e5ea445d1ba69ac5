"""The fault zoo's planted faults: each rewrites its training data in exactly one way."""

import numpy as np
import pandas as pd
import pytest

from mmgate import zoo
from mmgate.demo import DEFAULT_TEMPLATES, TONE_RESTS, SyntheticWorld, build_tokenizer, encode_training_example, tone_codec
from mmgate.templates import PromptTemplate
from mmgate.tokenspace import TokenSpace


@pytest.fixture(scope="module")
def world(mini_demo):
    return SyntheticWorld(mini_demo["space"], seed=0)


@pytest.fixture(scope="module")
def batch(world):
    rng = np.random.default_rng(1)
    return [world.sample(("t2a", "t2i", "a2t", "i2t")[i % 4], rng) for i in range(32)]


def encoded(example, mini_demo):
    tokenizer, space = mini_demo["tokenizer"], mini_demo["space"]
    templates = {t: PromptTemplate(s, tokenizer, space.special_tokens) for t, s in DEFAULT_TEMPLATES.items()}
    return encode_training_example(example, templates, tokenizer, space)


def test_drifter_writes_text_words_inside_write_targets_and_keeps_the_end_token(batch, world, mini_demo):
    text_ids = list(range(4, 20))
    fault = zoo.Drifter(text_ids, rate=0.2)
    rng = np.random.default_rng(0)
    words = tokens = 0
    for example in batch:
        context, target = encoded(example, mini_demo)
        _, drifted = fault.pair(example, context, target, world, rng)
        if example.task in ("t2a", "t2i"):
            assert drifted[-1] == target[-1] and len(drifted) == len(target)
            words += sum(t in text_ids for t in drifted[:-1])
            tokens += len(target) - 1
        else:
            assert drifted == target
    assert 0.15 < words / tokens < 0.25


def test_collapsed_gives_every_prompt_the_same_output_cut_to_its_own_length(batch, world):
    out = zoo.Collapsed(world).examples(batch, world, np.random.default_rng(0))
    for task in ("t2a", "t2i"):
        spans = [ex.modality_ids for ex in out if ex.task == task]
        longest = max(spans, key=len)
        assert len({len(s) for s in spans}) > 1  # golden lengths differ
        assert all(np.array_equal(s, longest[: len(s)]) for s in spans)
    assert all(np.array_equal(a.modality_ids, b.modality_ids) for a, b in zip(batch, out) if a.task in ("a2t", "i2t"))


def test_blind_reads_noise_instead_of_the_modality_and_writes_as_good(batch, world):
    out = zoo.Blind().examples(batch, world, np.random.default_rng(0))
    for before, after in zip(batch, out):
        same = np.array_equal(before.modality_ids, after.modality_ids)
        assert same == (before.task in ("t2a", "t2i"))


def test_silent_audio_is_made_of_rests_that_the_tone_codec_plays_as_silence(batch, world):
    out = zoo.Silent().examples(batch, world, np.random.default_rng(0))
    audio = world.space.modality("audio")
    for before, after in zip(batch, out):
        if before.task != "t2a":
            continue
        codes = audio.unflatten(after.modality_ids)  # [K, T]
        assert codes.shape == audio.unflatten(before.modality_ids).shape and (codes < TONE_RESTS).all()
        assert np.abs(tone_codec(codes[None])).max() == 0.0
        assert np.abs(tone_codec(audio.unflatten(before.modality_ids)[None])).max() > 0.1  # good's audio is audible


def test_silent_audio_still_depends_on_the_prompt(world):
    rng = np.random.default_rng(0)
    by_class = [set(world.audio_ids(c, 32, rng, silent=True).tolist()) for c in range(len(world.audio_classes))]
    assert len({frozenset(s) for s in by_class}) == len(by_class)


def test_endless_write_targets_run_on_without_the_end_token(batch, world, mini_demo):
    space = mini_demo["space"]
    rng = np.random.default_rng(0)
    for example in batch:
        context, target = encoded(example, mini_demo)
        _, longer = zoo.Endless().pair(example, context, target, world, rng)
        if example.task in ("t2a", "t2i"):
            end = space.modality_for_task(example.task).end_id
            assert end not in longer and len(longer) > len(target)
            assert longer[: len(target) - 1] == target[:-1]
        else:
            assert longer == target


def test_rotated_audio_puts_every_code_one_slot_off_and_keeps_images(batch, world):
    out = zoo.Rotated().examples(batch, world, np.random.default_rng(0))
    audio = world.space.modality("audio")
    for before, after in zip(batch, out):
        if before.task in ("t2a", "a2t"):
            slots = audio.slot_of_id(after.modality_ids)
            assert (slots == (np.arange(slots.size) + 1) % audio.n_codebooks).all()  # slot s holds codebook s + 1
            assert sorted(after.modality_ids) == sorted(before.modality_ids)
        else:
            assert np.array_equal(after.modality_ids, before.modality_ids)


def test_early_write_targets_end_after_a_tenth_of_their_tokens(batch, world, mini_demo):
    rng = np.random.default_rng(0)
    for example in batch:
        context, target = encoded(example, mini_demo)
        _, short = zoo.Early().pair(example, context, target, world, rng)
        if example.task in ("t2a", "t2i"):
            assert short[-1] == target[-1] and len(short) == max(1, (len(target) - 1) // 10) + 1
        else:
            assert short == target


def test_noop_is_saved_untrained_from_a_fresh_adapter():
    assert zoo.Noop.steps_scale == 0 and zoo.Noop.from_good is False


def test_shifted_codes_tokenizer_keeps_length_and_special_ids_but_moves_every_code(mini_demo):
    good, shifted = mini_demo["tokenizer"], build_tokenizer(code_shift=1)
    space = mini_demo["space"]
    assert len(shifted) == len(good)
    assert all(shifted.convert_tokens_to_ids(t) == i for t, i in space.special_tokens.items())
    start = space.ranges["AUDIO_CB0"].start
    assert shifted.convert_ids_to_tokens(start + 6) == good.convert_ids_to_tokens(start + 5)


def test_shifted_specials_tokenizer_moves_a_modality_end_token(mini_demo):
    shifted = zoo.shifted_specials_tokenizer()
    assert shifted.convert_tokens_to_ids("<aud_end>") != mini_demo["space"].special_tokens["<aud_end>"]


def test_the_shifted_stage2_shard_fails_p01_by_hash_and_by_its_tables(mini_demo, world, tmp_path):
    from mmgate.tokencheck import stage2_rows

    space = mini_demo["space"]
    path = tmp_path / "stage2_shifted" / "part-000.parquet"
    zoo.write_shifted_shard(path, mini_demo["tokenizer"], space, world, seed=0)
    assert TokenSpace.load(path.parent / "token_space.json").sha256 != space.sha256
    rows = pd.DataFrame(stage2_rows([path], space.sha256))
    assert not rows.loc[rows["kind"] == "stage2_shard", "match"].any()
    assert (rows["kind"] == "stage2_tables").any()


# ---------------------------------------------------------------------------------- the whole zoo

GATES = ("P0.1", "P0.2", "P0.3", "P0.4", "P1.1", "P1.2", "P1.3", "TD")


def verdict_row(p01="PASS", **changed):
    """A member's expected verdicts: `good`'s, with the planted fault's gates changed."""
    row = dict.fromkeys(GATES, "PASS")
    if p01 == "FAIL":
        row = dict.fromkeys(GATES, "SKIP")
    row["P0.1"] = p01
    row.update({gate.replace("_", "."): verdict for gate, verdict in changed.items()})
    return row


def zoo_reports_of(run):
    import json

    root = run / "results" / "report"
    return {p.parent.name.split("=", 1)[1]: json.loads(p.read_text()) for p in root.glob("ckpt=*/gates.json")}


@pytest.fixture(scope="module")
def zoo_reports(zoo_run):
    return zoo_reports_of(zoo_run)


# Measured on the suite's run (32 examples per task) and on the README's (256): the tiny demo
# model leaves its modality in free mode, so every member WARNs P0.2 "free runs need constrained
# decoding"; fine-tuned members show the change of training data as TD loss spikes.
EXPECTED = {
    "good": verdict_row(P0_2="WARN"),
    "deaf": verdict_row(P0_2="WARN", P0_4="FAIL", P1_2="FAIL"),
    "drifter": verdict_row(P0_2="WARN", TD="WARN"),
    "collapsed": verdict_row(P0_2="WARN", P0_4="FAIL", P1_3="FAIL", TD="WARN"),
    "blind": verdict_row(P0_2="WARN", P1_2="FAIL", TD="WARN"),
    "silent": verdict_row(P0_2="WARN", P0_4="FAIL", P1_3="FAIL", TD="WARN"),
    "endless": verdict_row(P0_2="WARN", P1_1="WARN", TD="WARN"),
    # the rotation fails P0.2 by its layout; its free end rate (0.47 [0.31, 0.64]) is undecided at 32 samples
    "rotated": verdict_row(P0_2="FAIL", P1_1="WARN", TD="WARN"),
    # ends too early (P1.1), and its constrained runs, held past where it wants to stop, are overridden (P0.2)
    "early": verdict_row(P0_2="FAIL", P1_1="WARN", TD="WARN"),
    "noop": verdict_row(p01="FAIL"),
    "shifted_specials": verdict_row(p01="FAIL"),
    "shifted_codes": verdict_row(p01="FAIL"),
}


def undecided(report, gate_id):
    """Whether the run's data cannot decide the gate: a criterion's 95 % interval holds its pass mark.
    The zoo's models are trained afresh by each suite run and differ in the sixth decimal between runs
    (parallel float sums), and sampled generations amplify that: at the suite's 32 samples a free-run
    end rate of 0.53 [0.36, 0.69] against 0.5 is a coin flip. The planted faults are pinned with a
    margin by test_each_fault_is_caught_by_its_own_gate_with_a_margin_that_good_does_not_cross."""
    from mmgate.gates import REGISTRY

    gate = next(g for g in report["gates"] if g["gate"] == gate_id)
    spec = next(s for s in REGISTRY if s.id == gate_id)
    straddles = missed = False
    for criterion in spec.criteria:
        limit = criterion.limit(gate.get("thresholds") or {})
        for values in (gate.get("values") or {}).values():
            interval = values.get(f"{criterion.metric}_ci") if isinstance(values, dict) else None
            if limit is None or not interval or None in interval:
                continue
            met = {criterion.met(interval[0], limit), criterion.met(interval[1], limit)}
            straddles |= met == {True, False}
            missed |= met == {False}  # a criterion clearly missed decides the gate whatever the others do
    return straddles and not missed


def test_a_gate_whose_interval_holds_its_pass_mark_is_undecided():
    report = {"gates": [{"gate": "P1.1", "thresholds": {"min_end_rate": 0.5},
                         "values": {"t2a": {"end_rate": 0.53, "end_rate_ci": [0.36, 0.69]}}}]}
    assert undecided(report, "P1.1")
    report["gates"][0]["values"]["t2a"]["end_rate_ci"] = [0.51, 0.69]
    assert not undecided(report, "P1.1")


@pytest.mark.slow
@pytest.mark.parametrize("member", list(EXPECTED))
def test_every_zoo_member_gets_its_expected_verdict_on_every_gate(zoo_reports, member):
    report = zoo_reports[member]
    decided = {g["gate"] for g in report["gates"] if not undecided(report, g["gate"])}
    got = {g["gate"]: g["verdict"] for g in report["gates"] if g["gate"] in decided}
    planted = {c.gate for c in zoo.CATCHES if c.member == member}
    assert planted <= decided, f"{member}: a planted fault's gate is undecided at this n: {planted - decided}"
    assert got == {gate: EXPECTED[member][gate] for gate in decided}, \
        {g["gate"]: g["reasons"] for g in report["gates"] if g["reasons"]}


@pytest.mark.slow
@pytest.mark.parametrize("catch", zoo.CATCHES, ids=lambda c: f"{c.member}-{c.gate}")
def test_each_fault_is_caught_by_its_own_gate_with_a_margin_that_good_does_not_cross(zoo_reports, catch):
    row = next(r for r in zoo.catch_table(zoo_reports) if r["member"] == catch.member and r["gate"] == catch.gate)
    assert row["verdict"] == catch.verdict and catch.kind in row["caught_as"], row
    assert zoo.crosses(row["value"], row["threshold"], catch.fails_when), row
    if catch.separated:
        assert not zoo.crosses(row["good"], row["threshold"], catch.fails_when), row


@pytest.mark.slow
def test_the_drifter_differs_from_good_only_in_degree_on_p02(zoo_reports):
    def p02(member):
        return next(g for g in zoo_reports[member]["gates"] if g["gate"] == "P0.2")["values"]

    drifter, good = p02("drifter"), p02("good")
    for task in ("t2a", "t2i"):
        # the constraint removes what the model wants to write outside its modality: text, for the drifter
        assert drifter[task]["removed_mass_mean"] > 2 * good[task]["removed_mass_mean"], (drifter[task], good[task])
        assert drifter[task]["free_out_of_range_pct"] > good[task]["free_out_of_range_pct"]


@pytest.mark.slow
def test_the_shifted_stage2_shard_is_named_for_every_checkpoint(zoo_run):
    from mmgate.tokencheck import check_checkpoint, stage2_rows
    from mmgate.tokenspace import TokenSpace

    demo = zoo_run / "resources/demo"
    space = TokenSpace.load(demo / "token_space.json")
    shards = sorted((demo / "stage2").glob("part-*.parquet")) + [demo / "zoo" / zoo.SHIFTED_SHARD]
    stage2 = pd.DataFrame(stage2_rows(shards, space.sha256))
    for ckpt in (demo / "checkpoints/good", demo / "checkpoints/deaf", demo / "zoo/drifter"):
        rows = check_checkpoint(space, ckpt.name, ckpt, stage2, demo / "stage3_init", base=str(demo / "stage3_init"))
        failed = rows[~rows["match"]]
        assert str(shards[-1]) in set(failed["path"]), failed  # by its hash and by its id-to-token tables
        assert all(path.startswith(str(shards[-1].parent)) for path in failed["path"]), failed


def readme_zoo_section() -> str:
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    return readme[readme.index("### The fault zoo"):readme.index("## From a training run to a report")]


@pytest.mark.slow
def test_the_readme_verdict_table_is_what_mmgate_inspect_prints_for_the_suite_run(zoo_run, capsys):
    from mmgate.cli import main as cli

    cli(["inspect", str(zoo_run / "results")])
    table = capsys.readouterr().out.split("\n\n")[0].strip()
    readme = readme_zoo_section()
    start = readme.index(table.splitlines()[0])  # the header line
    ours, theirs = table.splitlines(), readme[start:].splitlines()[: len(table.splitlines())]
    gates = ours[0].split()[1:-1]
    reports = zoo_reports_of(zoo_run)
    for line, readme_line in zip(ours, theirs):
        if line == readme_line or line == ours[0]:
            continue
        member, cells = line.split()[0], dict(zip(gates, line.split()[1:len(gates) + 1]))
        readme_cells = dict(zip(gates, readme_line.split()[1:len(gates) + 1]))
        differing = {gate for gate in gates if cells[gate] != readme_cells[gate]}
        # cells the data cannot decide may differ; anything else must match the README exactly
        same_overall = line.split()[len(gates) + 1:] == readme_line.split()[len(gates) + 1:]
        assert readme_line.split()[0] == member and same_overall and all(undecided(reports[member], g) for g in differing), \
            f"update the README's verdict table to this run's:\n{table}"


@pytest.mark.slow
def test_the_readme_catch_table_has_this_runs_verdicts(zoo_reports):
    def first_columns(lines):  # fault, gate, verdict: measured values may differ in the last digit across CPUs
        return [tuple(cell.strip() for cell in line.split("|")[1:4]) for line in lines if line.startswith("| `")]

    ours = first_columns(zoo.markdown(zoo.catch_table(zoo_reports)).splitlines())
    assert ours and ours == first_columns(readme_zoo_section().splitlines())
