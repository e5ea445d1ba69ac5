"""Prompt templates: text parts tokenized piecewise, special tokens and modality ids spliced in.

A template is a string such as ``"{bos}Generate music : {prompt}<aud_start>"``. ``{prompt}`` and
``{caption}`` are replaced by the example's text and tokenized together with the literal text
around them; ``{bos}``/``{eos}`` are the tokenizer's own special tokens; ``<name>`` is a special
token of the token space; ``{modality}`` splices the example's absolute modality ids. User text
is never parsed as template syntax.

Example:

    >>> from mmgate.templates import PromptTemplate
    >>> class WordTokenizer:                      # the smallest tokenizer-like object
    ...     vocab = {"Generate": 10, "music": 11, ":": 12, "slow": 13, "piano": 14}
    ...     bos_token_id, eos_token_id = 1, 2
    ...     def encode(self, text, add_special_tokens=False):
    ...         return [self.vocab[w] for w in text.split()]
    >>> template = PromptTemplate("{bos}Generate music : {prompt}<aud_start>",
    ...                           WordTokenizer(), special_ids={"<aud_start>": 3})
    >>> template.encode(prompt="slow piano")
    [1, 10, 11, 12, 13, 14, 3]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import TemplateError

TEXT_FIELDS = ("prompt", "caption")
_PIECE = re.compile(r"\{(\w+)\}|(<[^<>\s{}]+>)")


@dataclass(frozen=True)
class _Piece:
    kind: str  # "text" | "field" | "ids" | "modality"
    value: Any


class PromptTemplate:
    def __init__(self, template: str, tokenizer: Any, special_ids: Mapping[str, int], name: str = "template"):
        self.template = template
        self.tokenizer = tokenizer
        self.name = name
        self.pieces = self._parse(template, special_ids)

    @property
    def uses_modality(self) -> bool:
        return any(p.kind == "modality" for p in self.pieces)

    def _parse(self, template: str, special_ids: Mapping[str, int]) -> list[_Piece]:
        pieces: list[_Piece] = []
        cursor = 0
        for match in _PIECE.finditer(template):
            if match.start() > cursor:
                pieces.append(_Piece("text", template[cursor : match.start()]))
            placeholder, special = match.groups()
            if placeholder in TEXT_FIELDS:
                pieces.append(_Piece("field", placeholder))
            elif placeholder == "modality":
                pieces.append(_Piece("modality", None))
            elif placeholder in ("bos", "eos"):
                token_id = getattr(self.tokenizer, f"{placeholder}_token_id", None)
                if token_id is None:
                    raise TemplateError(
                        f"{self.name}: {{{placeholder}}} is used but the tokenizer has no {placeholder} token; "
                        "remove it from the template or set the tokenizer's special token."
                    )
                pieces.append(_Piece("ids", [int(token_id)]))
            elif placeholder is not None:
                raise TemplateError(
                    f"{self.name}: unknown placeholder {{{placeholder}}} in {template!r}; "
                    "known: {prompt}, {caption}, {modality}, {bos}, {eos} and <special> token names."
                )
            elif special in special_ids:
                pieces.append(_Piece("ids", [int(special_ids[special])]))
            else:
                import difflib

                close = difflib.get_close_matches(special, list(special_ids), n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(map(repr, close))}?" if close else (
                    f"{len(special_ids)} special tokens are known, none close to it")
                raise TemplateError(
                    f"{self.name}: {special!r} in {template!r} is not a special token of the token space or the "
                    f"tokenizer ({hint}). Fix the name or add it to token_space.json."
                )
            cursor = match.end()
        if cursor < len(template):
            pieces.append(_Piece("text", template[cursor:]))
        return pieces

    def encode(self, prompt: str = "", caption: str = "", modality_ids: Sequence[int] | None = None) -> list[int]:
        """Token ids of the rendered template (the context before the target)."""
        values = {"prompt": prompt, "caption": caption}
        ids: list[int] = []
        text_run: list[str] = []

        def flush() -> None:
            text = "".join(text_run)
            if text.strip():
                ids.extend(int(i) for i in self.tokenizer.encode(text, add_special_tokens=False))
            text_run.clear()

        for piece in self.pieces:
            if piece.kind == "text":
                text_run.append(piece.value)
            elif piece.kind == "field":
                text_run.append(values[piece.value])
            else:
                flush()
                if piece.kind == "ids":
                    ids.extend(piece.value)
                else:
                    if modality_ids is None:
                        raise TemplateError(f"{self.name}: the template splices {{modality}} but no modality ids were given")
                    ids.extend(int(i) for i in modality_ids)
        flush()
        return ids


def validate_templates(templates: Mapping[str, str], tokenizer: Any, special_ids: Mapping[str, int]) -> None:
    """Check every task's template against the tokenizer before any job renders one; one error lists all.

    Besides unknown placeholders and special tokens (resolved from the token space and the
    tokenizer's added tokens), it refuses templates that would give wrong numbers silently: a
    context that contains the end-of-sequence token (the target would be scored after the end), a
    write template without {prompt} (the prompt ablation would compare a prompt with itself) and a
    read template without {modality} (A2T/I2T would never see the audio or image).
    """
    from .tasks import READ_TASKS, WRITE_TASKS

    known = dict(special_ids)
    added = getattr(tokenizer, "get_added_vocab", lambda: {})()
    known.update({name: int(i) for name, i in added.items() if name.startswith("<") and name.endswith(">")})
    problems = []
    for task, text in templates.items():
        name = f"templates.{task}"
        try:
            template = PromptTemplate(text, tokenizer, known, name=name)
        except TemplateError as err:
            problems.append(str(err))
            continue
        fields = {p.value for p in template.pieces if p.kind == "field"}
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None and any(p.kind == "ids" and int(eos) in p.value for p in template.pieces):
            problems.append(f"{name}: {text!r} contains the end-of-sequence token before its target, so every target "
                            "would be scored after the sequence ended. The target's own end token is added by mmgate; "
                            "remove {eos} from the template.")
        if task in WRITE_TASKS and "prompt" not in fields:
            problems.append(f"{name}: {text!r} has no {{prompt}}: generation and the prompt ablation would never see "
                            "the example's prompt.")
        if task in READ_TASKS and not template.uses_modality:
            problems.append(f"{name}: {text!r} has no {{modality}}: the model would caption without the modality tokens.")
        if task in WRITE_TASKS and template.uses_modality:
            problems.append(f"{name}: {text!r} splices {{modality}} into the context of a write task, whose modality "
                            "tokens are what the model generates: there are none to splice. Remove {modality}; the "
                            "template ends with the modality's start token.")
    if problems:
        raise TemplateError("The prompt templates in the config cannot be used as written:\n  - " + "\n  - ".join(problems)
                            + "\nFix `templates:` in the config (exactly the formatting the checkpoint was trained with).")
