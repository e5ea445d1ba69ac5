import pytest

from mmgate.errors import TemplateError
from mmgate.templates import PromptTemplate


class WordTokenizer:
    bos_token_id, eos_token_id = 1, 2

    def __init__(self):
        self.vocab = {}

    def encode(self, text, add_special_tokens=False):
        return [self.vocab.setdefault(w, 100 + len(self.vocab)) for w in text.split()]


SPECIALS = {"<aud_start>": 3, "<aud_end>": 4}


def test_text_and_prompt_are_tokenized_together_and_specials_spliced():
    tok = WordTokenizer()
    ids = PromptTemplate("{bos}make : {prompt}<aud_start>", tok, SPECIALS).encode(prompt="slow piano")
    assert ids == [1, tok.vocab["make"], tok.vocab[":"], tok.vocab["slow"], tok.vocab["piano"], 3]


def test_modality_ids_are_spliced_verbatim():
    ids = PromptTemplate("{bos}<aud_start>{modality}<aud_end> Caption", WordTokenizer(), SPECIALS).encode(modality_ids=[17, 18])
    assert ids[:5] == [1, 3, 17, 18, 4]


def test_empty_prompt_keeps_the_tokens_before_the_target():
    assert PromptTemplate("{bos}{prompt}<aud_start>", WordTokenizer(), SPECIALS).encode(prompt="") == [1, 3]


def test_user_text_with_braces_is_not_template_syntax():
    tok = WordTokenizer()
    ids = PromptTemplate("{prompt}", tok, SPECIALS).encode(prompt="{modality} <aud_start>")
    assert ids == [tok.vocab["{modality}"], tok.vocab["<aud_start>"]]


def test_unknown_special_token_names_the_template():
    with pytest.raises(TemplateError, match="templates.t2a.*'<audio_start>'"):
        PromptTemplate("{bos}<audio_start>", WordTokenizer(), SPECIALS, name="templates.t2a")


def test_unknown_placeholder_is_rejected():
    with pytest.raises(TemplateError, match=r"unknown placeholder \{promt\}"):
        PromptTemplate("{promt}", WordTokenizer(), SPECIALS)


GOOD = {"t2a": "{bos}Generate : {prompt}<aud_start>", "a2t": "{bos}<aud_start>{modality}<aud_end> Caption :"}


def validate(**changes):
    from mmgate.templates import validate_templates

    validate_templates({**GOOD, **changes}, WordTokenizer(), SPECIALS)


def test_valid_templates_pass_the_check():
    validate()


def test_a_context_ending_in_eos_is_refused_before_any_job():
    with pytest.raises(TemplateError, match="templates.a2t: .* contains the end-of-sequence token before its target"):
        validate(a2t="{bos}<aud_start>{modality}<aud_end> Describe the music:{eos}")


def test_a_read_template_without_modality_and_a_write_template_without_prompt_are_refused():
    with pytest.raises(TemplateError) as err:
        validate(a2t="{bos}Describe :", t2a="{bos}Generate :<aud_start>")
    assert "templates.a2t: '{bos}Describe :' has no {modality}" in str(err.value)
    assert "templates.t2a: '{bos}Generate :<aud_start>' has no {prompt}" in str(err.value)


def test_every_bad_template_is_listed_in_one_error():
    with pytest.raises(TemplateError) as err:
        validate(t2a="{promt}<aud_start>", a2t="{bos}<unknown>{modality}")
    assert "unknown placeholder {promt}" in str(err.value) and "'<unknown>'" in str(err.value)


def test_special_tokens_the_tokenizer_added_are_known():
    tok = WordTokenizer()
    tok.get_added_vocab = lambda: {"<sep>": 9}
    from mmgate.templates import validate_templates

    validate_templates({"t2a": "{prompt}<sep><aud_start>"}, tok, SPECIALS)


def test_a_write_template_that_splices_modality_is_refused_before_any_job():
    with pytest.raises(TemplateError, match=r"templates.t2a: .* splices \{modality\} into the context of a write task"):
        validate(t2a="{bos}<aud_start>{modality}<aud_end> Generate : {prompt}<aud_start>")


def test_an_unknown_special_token_lists_close_matches_not_every_token():
    many = {**SPECIALS, **{f"<tok_{i}>": 1000 + i for i in range(5000)}}
    with pytest.raises(TemplateError) as err:
        PromptTemplate("{bos}<aud_strat>", WordTokenizer(), many, name="templates.t2a")
    assert "did you mean '<aud_start>'" in str(err.value) and len(str(err.value)) < 400
