"""`mmgate` command line: build the demo and validate inputs before a cluster run."""

from __future__ import annotations

import argparse
import sys

from .errors import MMGateError


def _demo(args: argparse.Namespace) -> None:
    import torch

    from .demo import build_demo

    torch.set_num_threads(args.threads)
    out = build_demo(args.out, golden_per_task=args.golden_per_task, train_steps=args.train_steps, seed=args.seed)
    print(f"demo built under {out}")


def _token_space(args: argparse.Namespace) -> None:
    from .tokenspace import TokenSpace

    space = TokenSpace.load(args.path)
    print(f"{args.path}: valid, vocab_size {space.vocab_size}, sha256 {space.sha256}")
    for name, m in space.modalities.items():
        print(f"  {name}: {m.n_codebooks} x {m.codebook_size} codes, {m.layout}, {m.start_token} ... {m.end_token}")


def _golden(args: argparse.Namespace) -> None:
    from .golden import load_golden
    from .tokenspace import TokenSpace

    frame = load_golden(args.path, TokenSpace.load(args.token_space))
    counts = frame.groupby("task")["expected_len"].agg(["count", "min", "max"])
    print(f"{args.path}: valid, {len(frame)} examples")
    print(counts.to_string())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the offline demo models and data")
    demo.add_argument("--out", default="resources/demo")
    demo.add_argument("--golden-per-task", type=int, default=256)
    demo.add_argument("--train-steps", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=2)
    demo.set_defaults(func=_demo)
    ts = sub.add_parser("token-space", help="validate token_space.json and print its hash")
    ts.add_argument("path")
    ts.set_defaults(func=_token_space)
    golden = sub.add_parser("golden", help="validate a golden set against a token space")
    golden.add_argument("path")
    golden.add_argument("--token-space", required=True)
    golden.set_defaults(func=_golden)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except MMGateError as err:
        print(f"mmgate: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
