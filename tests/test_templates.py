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
