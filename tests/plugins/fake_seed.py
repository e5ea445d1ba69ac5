"""Mimics the SEED tokenizer's API (`ImageTokenizer.from_pretrained(...)`, `decode(ids[1, 32])`)
without its diffusion weights: each code paints one cell of a 4x8 grid."""

import numpy as np
import torch
from PIL import Image

calls = []


class ImageTokenizer:
    def __init__(self, model_path, diffusion_model_path, load_diffusion=True, image_size=224):
        self.model_path, self.image_size = model_path, image_size

    @classmethod
    def from_pretrained(cls, model_path, diffusion_model_path, load_diffusion=True, image_size=224, **kwargs):
        return cls(model_path, diffusion_model_path, load_diffusion, image_size)

    def decode(self, indices, negative_indices=None, guidance_scale=10, num_inference_steps=20):
        assert isinstance(indices, torch.Tensor) and tuple(indices.shape) == (1, 32), indices.shape
        calls.append((tuple(indices.shape), num_inference_steps))
        grid = (indices.view(4, 8).numpy() % 256).astype(np.uint8)
        cells = np.kron(grid, np.ones((self.image_size // 4, self.image_size // 8), dtype=np.uint8))
        return [Image.fromarray(np.stack([cells] * 3, axis=-1))]


def stripes(codes, proc_size):
    """A plugin decoder: `tests.plugins.fake_seed:stripes`."""
    size = proc_size or 32
    return [Image.fromarray(np.full((size, size, 3), int(row[0]) % 256, dtype=np.uint8)) for row in codes]


def solid(codes):
    """A one-argument plugin, as a tokenizer's own decode(codes) would be: 8x8 images."""
    return [Image.fromarray(np.full((8, 8, 3), int(row[0]) % 256, dtype=np.uint8)) for row in codes]


def broken(codes, proc_size):
    """A plugin whose every call fails (missing weights, a wrong device, a bug)."""
    raise RuntimeError("checkpoint file vq.pt not found")


def picky(codes, proc_size):
    """Fails on valid codes whose first code is odd, decodes the rest: still the decoder's fault."""
    if any(int(row[0]) % 2 for row in codes):
        raise RuntimeError("index out of bounds in upsampler")
    return stripes(codes, proc_size)


def strict(codes, proc_size):
    """Documents that it cannot decode images whose first code is odd: InvalidCodes, a row per sample."""
    from mmgate.decoders import InvalidCodes

    if any(int(row[0]) % 2 for row in codes):
        raise InvalidCodes("the first code must be even")
    return stripes(codes, proc_size)


oom_batches = []


def small_memory(codes, proc_size):
    """Out of memory above two images at a time, as a GPU decoder would be."""
    oom_batches.append(len(codes))
    if len(codes) > 2:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return stripes(codes, proc_size)


def no_memory(codes, proc_size):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def three(codes, proc_size, palette):
    """Not a decoder: it needs a third argument mmgate does not pass."""
    return stripes(codes, proc_size)
