"""Decoders from modality codes to waveforms and pixels, behind two small interfaces.

Audio: the `encodec` package (`EncodecModel.encodec_model_24khz`) and transformers'
`EncodecModel` (e.g. the 32 kHz MusicGen codec). Image: transformers VQ-VAE models with
`decode(tokens)` (e.g. `JanusVQVAE`), the SEED tokenizer (`ImageTokenizer.decode(ids[1, 32])`,
from the user's SEED install and weights), and a user plugin `package.module:function`.

Codes are 0-based within each codebook (absolute id minus the range start); callers validate
them first, since decoders raise bare IndexErrors on out-of-range codes. A random-init EnCodec
has all-zero codebooks and decodes every input alike, so `randomize_codebooks` draws them anew
(demo and tests only).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from .errors import ConfigError
from .tasks import TASK_MODALITY, WRITE_TASKS

# encodec_model_24khz: bandwidth (kbps) by number of codebooks
ENCODEC_24K_BANDWIDTH = {2: 1.5, 4: 3.0, 8: 6.0, 16: 12.0, 32: 24.0}


class AudioDecoder(Protocol):
    sample_rate: int
    channels: int
    hop_length: int
    n_codebooks: int
    codebook_size: int

    def decode(self, codes: Any) -> Any:
        """codes [B, K, T] (LongTensor) -> waveforms [B, C, T * hop_length] (FloatTensor)."""


class ImageDecoder(Protocol):
    codebook_size: int

    def decode(self, codes: np.ndarray, proc_size: int | None) -> list[Any]:
        """codes [B, N] -> B PIL images."""


def _randomize_codebooks(module: Any, seed: int) -> int:
    """Draw every EuclideanCodebook's `embed` from N(0, 1) and mark it initialised; returns how many."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    count = 0
    for sub in module.modules():
        embed, inited = getattr(sub, "embed", None), getattr(sub, "inited", None)
        if isinstance(embed, torch.Tensor) and inited is not None:
            with torch.no_grad():
                embed.copy_(torch.randn(embed.shape, generator=generator))
                if hasattr(sub, "embed_avg"):
                    sub.embed_avg.copy_(embed)
                inited.fill_(True)
            count += 1
    return count


@dataclass
class EncodecPackageDecoder:
    """The `encodec` package's 24 kHz model; weights from a local file, the torch hub cache, or random."""

    n_codebooks: int = 4
    weights: str | None = None
    pretrained: bool = False
    randomize_codebooks: bool = False
    seed: int = 0
    device: str = "cpu"
    model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import torch
        from encodec import EncodecModel

        if self.n_codebooks not in ENCODEC_24K_BANDWIDTH:
            raise ConfigError(f"decoders.audio: encodec_model_24khz has no bandwidth with {self.n_codebooks} codebooks; "
                              f"it supports {sorted(ENCODEC_24K_BANDWIDTH)}")
        torch.manual_seed(self.seed)
        # pretrained=True reads the torch hub cache (it downloads only when the cache is empty)
        model = EncodecModel.encodec_model_24khz(pretrained=self.pretrained and not self.weights)
        if self.weights:
            model.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
        if self.randomize_codebooks:
            _randomize_codebooks(model, self.seed)
        model.set_target_bandwidth(ENCODEC_24K_BANDWIDTH[self.n_codebooks])
        self.model = model.to(self.device).eval()
        self.sample_rate, self.channels = model.sample_rate, model.channels
        self.hop_length = int(np.prod(model.encoder.ratios))
        self.codebook_size = model.quantizer.bins

    def decode(self, codes: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.decode([(codes.to(self.device), None)]).float().cpu()


@dataclass
class TransformersEncodecDecoder:
    """transformers' `EncodecModel` from a local directory (or a config, for tests and the demo)."""

    path: str | None = None
    config: dict[str, Any] | None = None
    n_codebooks: int = 4
    randomize_codebooks: bool = False
    seed: int = 0
    device: str = "cpu"
    model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import torch
        from transformers import EncodecConfig, EncodecModel

        torch.manual_seed(self.seed)
        if self.path:
            model = EncodecModel.from_pretrained(self.path)
        else:
            model = EncodecModel(EncodecConfig(**(self.config or {})))
        if self.randomize_codebooks:
            _randomize_codebooks(model, self.seed)
        self.model = model.to(self.device).eval()
        cfg = model.config
        self.sample_rate, self.channels = int(cfg.sampling_rate), int(cfg.audio_channels)
        self.hop_length = int(np.prod(cfg.upsampling_ratios))
        self.codebook_size = int(cfg.codebook_size)

    def decode(self, codes: Any) -> Any:
        import torch

        with torch.inference_mode():  # audio_codes are shaped (chunks, B, K, T): one chunk here
            out = self.model.decode(codes[None].to(self.device), [None])
        values = out.audio_values if hasattr(out, "audio_values") else out[0]
        return values.float().cpu()


def _to_pil(pixels: Any) -> list[Any]:
    """[B, 3, H, W] in [-1, 1] -> PIL images."""
    from PIL import Image

    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


@dataclass
class VQVAEDecoder:
    """A transformers VQ-VAE exposing `decode(tokens)`, e.g. `JanusVQVAE`; square token grids.

    `JanusVQVAE.decode` expects `num_patches ** 2` tokens; its decoder is convolutional, so the
    grid is set per batch from the sample's token count and any square grid decodes.
    """

    model_class: str = "JanusVQVAE"
    path: str | None = None
    config: dict[str, Any] | None = None
    seed: int = 0
    device: str = "cpu"
    model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import torch
        import transformers

        cls = getattr(transformers, self.model_class, None)
        if cls is None or not hasattr(cls, "decode"):
            raise ConfigError(f"decoders.image.model_class = {self.model_class!r} is not a transformers model with decode(tokens)")
        torch.manual_seed(self.seed)
        if self.path:
            model = cls.from_pretrained(self.path)
        else:
            model = cls(cls.config_class(**(self.config or {})))
        self.model = model.to(self.device).eval()
        quantize = getattr(self.model, "quantize", None)
        self.codebook_size = int(getattr(self.model.config, "num_embeddings", 0) or quantize.num_embeddings)

    def decode(self, codes: np.ndarray, proc_size: int | None = None) -> list[Any]:
        import torch

        side = int(round(np.sqrt(codes.shape[1])))
        if side * side != codes.shape[1]:
            raise ValueError(f"{codes.shape[1]} image tokens do not form a square grid")
        quantize = getattr(self.model, "quantize", None)
        if quantize is not None and hasattr(quantize, "quant_state_dims"):
            quantize.quant_state_dims = [side, side]
        with torch.inference_mode():
            pixels = self.model.decode(torch.as_tensor(codes, dtype=torch.long, device=self.device))
        return _to_pil(pixels)


class InvalidCodes(ValueError):
    """Raised by a decoder (a plugin too) for codes it documents it cannot decode: the model's fault,
    a failed row of P0.3. Any other exception of a decoder on codes mmgate validated (in range, in
    their codebook slot, inside the decoder's codebook) is the decoder's fault and fails the job."""


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """`package.module:attribute` -> the attribute, with an error that names the config key."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{what} = {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{what} = {spec!r}: cannot import {module_name!r} ({err}); install it in the rule's environment") from err
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{what} = {spec!r}: module {module_name!r} has no {attribute!r}") from None


@dataclass
class SeedDecoder:
    """The SEED tokenizer's decoder (unCLIP diffusion): `ImageTokenizer.decode(ids[1, 32])` per image.

    Needs the user's SEED install and weights; `factory` names the class or function that builds
    it (e.g. `models.seed_llama_tokenizer:ImageTokenizer`) and `kwargs` its arguments.
    """

    factory: str = "models.seed_llama_tokenizer:ImageTokenizer"
    kwargs: dict[str, Any] = field(default_factory=dict)
    codebook_size: int = 8192
    tokens_per_image: int = 32
    decode_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    tokenizer: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        build = load_callable(self.factory, "decoders.image.factory")
        self.tokenizer = build.from_pretrained(**self.kwargs) if hasattr(build, "from_pretrained") else build(**self.kwargs)

    def decode(self, codes: np.ndarray, proc_size: int | None = None) -> list[Any]:
        import torch

        if codes.shape[1] != self.tokens_per_image:
            raise ValueError(f"SEED decodes {self.tokens_per_image} tokens per image, got {codes.shape[1]}")
        images = []
        for row in codes:  # the diffusion decoder takes one image at a time
            out = self.tokenizer.decode(torch.as_tensor(row[None], dtype=torch.long, device=self.device), **self.decode_kwargs)
            images.append(out[0] if isinstance(out, (list, tuple)) else out)
        return images


@dataclass
class PluginImageDecoder:
    """A user function `package.module:function(codes [B, N] ndarray[, proc_size]) -> list of PIL images`.

    A one-argument function (say your tokenizer's own `decode`) is called with the codes alone."""

    function: str = ""
    codebook_size: int = 0
    fn: Callable[..., Any] = field(init=False, repr=False)
    takes_size: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import inspect

        self.fn = load_callable(self.function, "decoders.image.function")
        try:
            params = inspect.signature(self.fn).parameters.values()
            self.takes_size = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params) >= 2
        except (TypeError, ValueError):  # a builtin without a signature: pass both, as documented
            self.takes_size = True

    def decode(self, codes: np.ndarray, proc_size: int | None = None) -> list[Any]:
        return list(self.fn(codes, proc_size) if self.takes_size else self.fn(codes))


@dataclass
class PluginAudioDecoder:
    """A user function `package.module:function(codes [B, K, T] LongTensor) -> waveforms [B, C, T * hop_length]`
    (tensor or array in [-1, 1]) at a declared sample rate: for codecs mmgate does not ship
    (SpeechTokenizer, DAC, SNAC, WavTokenizer). A one-argument callable of your codec, wrapped in a
    small module, is all it takes."""

    function: str = ""
    sample_rate: int = 0
    channels: int = 1
    hop_length: int = 0
    n_codebooks: int = 0
    codebook_size: int = 0
    fn: Callable[..., Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        missing = [k for k in ("sample_rate", "hop_length", "n_codebooks", "codebook_size") if getattr(self, k) <= 0]
        if missing:
            raise ConfigError(f"decoders.audio (backend plugin): set {missing} to your codec's values (positive integers)")
        self.fn = load_callable(self.function, "decoders.audio.function")

    def decode(self, codes: Any) -> Any:
        import torch

        out = self.fn(codes)
        return (out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))).float().cpu()


AUDIO_BACKENDS = {"encodec": EncodecPackageDecoder, "transformers_encodec": TransformersEncodecDecoder,
                  "plugin": PluginAudioDecoder}
IMAGE_BACKENDS = {"vqvae": VQVAEDecoder, "seed": SeedDecoder, "plugin": PluginImageDecoder}


RANDOM_WEIGHTS = "random weights"


def weights_origin(config: Mapping[str, Any]) -> str:
    """Where a `decoders.<kind>` section's weights come from, as the report states it.

    `RANDOM_WEIGHTS` means its outputs show whether codes decode, not what they depict.

        >>> weights_origin({"backend": "vqvae", "model_class": "JanusVQVAE"})
        'random weights'
        >>> weights_origin({"backend": "transformers_encodec", "path": "/models/encodec_24khz"})
        'from /models/encodec_24khz'
    """
    backend = config.get("backend")
    if backend == "plugin":
        return f"user code {config.get('function')}"
    if backend == "seed":
        return f"the SEED install's weights ({config.get('factory') or SeedDecoder.factory})"
    if config.get("randomize_codebooks"):
        return RANDOM_WEIGHTS
    source = config.get("weights") or config.get("path")
    if source:
        return f"from {source}"
    if backend == "encodec" and config.get("pretrained"):
        return "pretrained (torch hub cache)"
    return RANDOM_WEIGHTS


def build_decoder(modality: str, config: dict[str, Any], device: str = "cpu") -> AudioDecoder | ImageDecoder:
    """A decoder from the config's `decoders.<modality>` section (`backend` plus its arguments)."""
    backends = AUDIO_BACKENDS if modality == "audio" else IMAGE_BACKENDS
    options = dict(config)
    backend = options.pop("backend", None)
    options.pop("batch_size", None)
    if backend not in backends:
        raise ConfigError(f"decoders.{modality}.backend = {backend!r}; use one of {sorted(backends)}")
    cls = backends[backend]
    if "device" in cls.__dataclass_fields__:
        options["device"] = device
    unknown = set(options) - set(cls.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"decoders.{modality}: unknown option(s) {sorted(unknown)} for backend {backend!r}; "
                          f"it takes {sorted(k for k, f in cls.__dataclass_fields__.items() if f.init)}")
    return cls(**options)


def decoder_config_problems(decoders: Mapping[str, Any], space: Any) -> list[str]:
    """What is wrong with `decoders:` for this token space, found when the config is read (no model is built)."""
    # decoders are keyed by kind; the modality each decodes is the one its write task writes
    written = {TASK_MODALITY[task]: space.modality_for_task(task) for task in WRITE_TASKS
               if space.task_modalities[task] in space.modalities}
    problems = [f"decoders.{name} is missing: the token space has an {name} modality to decode (see "
                "config/config.yaml for the backends)" for name in written
                if not isinstance(decoders.get(name), Mapping)]
    for name, config in decoders.items():
        if not isinstance(config, Mapping) or name not in written:
            continue
        modality = written[name]
        backends = AUDIO_BACKENDS if name == "audio" else IMAGE_BACKENDS
        backend = config.get("backend")
        cls = backends.get(backend)
        where = f"decoders.{name}"
        if cls is None:
            problems.append(f"{where}.backend = {backend!r}; use one of {sorted(backends)}")
            continue
        fields = {k for k, f in cls.__dataclass_fields__.items() if f.init and k != "device"}
        unknown = sorted(set(config) - fields - {"backend"})
        if unknown:
            problems.append(f"{where}: unknown option(s) {unknown} for backend {backend!r}; it takes {sorted(fields)}")
        defaults = {k: f.default for k, f in cls.__dataclass_fields__.items()}
        if name == "audio" and "n_codebooks" in fields:
            k = config.get("n_codebooks", defaults.get("n_codebooks"))
            if k != modality.n_codebooks:
                problems.append(f"{where}.n_codebooks = {k} but the token space's {modality.name} has {modality.n_codebooks} "
                                f"codebooks; set it to {modality.n_codebooks}")
        if "codebook_size" in fields:
            size = config.get("codebook_size", defaults.get("codebook_size"))
            if not isinstance(size, int) or size < modality.codebook_size:
                problems.append(f"{where}.codebook_size = {size!r} is smaller than the token space's {modality.name} codebook "
                                f"({modality.codebook_size} codes), so codes would be rejected; set it to the decoder's size")
        if "function" in fields and not config.get("function"):
            problems.append(f"{where}.function must name 'package.module:function'")
        elif "function" in fields:
            problems += plugin_problems(config["function"], f"{where}.function")
    return problems


def plugin_problems(spec: str, what: str) -> list[str]:
    """Why the plugin `spec` cannot be called as a decoder (imported here, so a typo is found when the
    config is read, before Snakemake deletes any job's outputs), or nothing."""
    import inspect

    try:
        fn = load_callable(spec, what)
    except ConfigError as err:
        return [str(err)]
    if not callable(fn):
        return [f"{what} = {spec!r} is a {type(fn).__name__}, not a function"]
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: it is called as documented
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not positional and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return [f"{what} = {spec!r} takes no positional argument; a decoder is called with the codes"]
    if len(required) > 2:
        return [f"{what} = {spec!r} requires {len(required)} arguments ({', '.join(p.name for p in required)}); a "
                "decoder is called with the codes (and, for images, proc_size)"]
    return []
