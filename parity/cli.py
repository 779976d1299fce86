"""`parity` command line: a thin layer over parity.api.

Bad input ends with one line (what is wrong, then a Note: with the fix) and
exit 2; no traceback unless --debug.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import EXIT_USAGE, ParityError, UsageError

# The parent process only tokenizes: keep transformers from importing torch/TF/JAX
# there (seconds of import, memory). Workers get these variables removed again.
QUIET_PARENT_ENV = {"USE_TORCH": "0", "USE_TF": "0", "USE_FLAX": "0", "USE_JAX": "0",
                    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        raise UsageError(message, f"run `{self.prog} --help` for the options")


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="load one checkpoint in several frameworks and compare outputs",
                       description="Load PATH as PyTorch, TensorFlow and Flax models, run one batch, "
                                   "compare every output against the reference within tolerances.")
    p.add_argument("path", help="checkpoint folder (or a hub id present in the local cache)")
    p.add_argument("--task", help="Auto class family: base, sequence-classification, ... (default: from "
                                  "config.architectures)")
    p.add_argument("--frameworks", default="pt,tf,flax", help="comma list of pt, tf, flax (default: all three)")
    p.add_argument("--reference", default="pt", help="framework the others are judged against (default: pt)")
    p.add_argument("--source", default="auto", choices=["auto", "pt", "tf", "flax"],
                   help="weights every framework starts from; auto = native weights when present")
    p.add_argument("--text", action="append", dest="texts", help="an input text (repeatable)")
    p.add_argument("--texts-file", help="UTF-8 file with one text per line")
    p.add_argument("--batch-size", help="number of texts (cycled) or random-id rows")
    p.add_argument("--max-length", default="64", help="truncate to this many tokens (default: 64)")
    p.add_argument("--seed", default="0", help="seed for random inputs (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--atol", default=None, help="absolute tolerance (default: 1e-5)")
    p.add_argument("--rtol", default=None, help="relative tolerance (default: 1e-5)")
    p.add_argument("--outputs", default="logits,hidden_states,attentions",
                   help="output groups to compare: logits (head outputs), hidden_states, attentions")
    p.add_argument("--report-dir", help="where results.json goes (default: reports/<checkpoint name>)")
    p.add_argument("--inline", action="store_true", help="run every framework in this process (debugging)")
    p.add_argument("--verbose", "-v", action="store_true", help="print the mismatch message of every failing output")
    p.set_defaults(func=_cmd_check)


def _add_baseline(sub) -> None:
    p = sub.add_parser("record", help="record a golden baseline: inputs, outputs and environment",
                       description="Run PATH in the chosen frameworks and store the batch, every output "
                                   "(float32 npz) and the environment, for `parity compare` later.")
    p.add_argument("path", help="checkpoint folder")
    p.add_argument("--out", required=True, help="baseline folder to write")
    for flag, kw in (("--task", {}), ("--frameworks", {"default": "pt,tf,flax"}), ("--reference", {"default": "pt"}),
                     ("--source", {"default": "auto", "choices": ["auto", "pt", "tf", "flax"]}),
                     ("--text", {"action": "append", "dest": "texts"}), ("--texts-file", {}), ("--batch-size", {}),
                     ("--max-length", {"default": "64"}), ("--seed", {"default": "0"}),
                     ("--device", {"default": "auto", "choices": ["auto", "cpu", "gpu"]}), ("--atol", {}),
                     ("--rtol", {}), ("--outputs", {"default": "logits,hidden_states,attentions",
                                                    "help": "output groups to keep (limits the size)"}),
                     ("--report-dir", {})):
        p.add_argument(flag, **kw)
    p.add_argument("--inline", action="store_true")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("compare", help="run the recorded inputs here and compare with a golden baseline",
                       description="Run the current environment on BASELINE's inputs and compare each framework "
                                   "with its recorded outputs (same tolerances, diagnosis and reports as check).")
    p.add_argument("baseline", help="folder written by `parity record`")
    p.add_argument("--checkpoint", help="checkpoint folder (default: the one recorded)")
    p.add_argument("--frameworks", help="recorded frameworks to run here (default: all recorded)")
    p.add_argument("--atol", help="absolute tolerance (default: the recorded one)")
    p.add_argument("--rtol", help="relative tolerance (default: the recorded one)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"])
    p.add_argument("--report-dir", help="where results.json goes (default: reports/<baseline name>-compare)")
    p.add_argument("--inline", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=_cmd_compare)


def _cmd_record(args) -> int:
    from .baseline import human, record
    from .config import DEFAULT_ATOL, DEFAULT_RTOL, CheckConfig
    from .report import console

    if not args.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    cfg = CheckConfig(
        path=args.path, task=args.task, frameworks=args.frameworks, reference=args.reference, source=args.source,
        texts=args.texts, texts_file=args.texts_file, batch_size=args.batch_size, max_length=args.max_length,
        seed=args.seed, device=args.device, atol=DEFAULT_ATOL if args.atol is None else args.atol,
        rtol=DEFAULT_RTOL if args.rtol is None else args.rtol, outputs=args.outputs,
        report_dir=args.report_dir, inline=args.inline,
    ).validated(min_frameworks=1)
    results, size = record(cfg, args.out)
    print(console.render(results.to_dict()))
    print(f"baseline: {args.out} ({human(size)} written)")
    return results.exit_code


def _cmd_compare(args) -> int:
    from .baseline import Baseline, compare
    from .report import console

    if not args.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    base = Baseline.open(args.baseline)
    report_dir = args.report_dir or str(Path("reports") / f"{Path(args.baseline).resolve().name}-compare")
    rec = base.meta["environment"]["versions"]
    print(f"baseline {args.baseline}: recorded {base.meta['created']} with "
          + ", ".join(f"{k} {rec.get(k)}" for k in ("transformers", "torch", "tensorflow", "jax", "flax")
                      if rec.get(k)))
    results = compare(base, path=args.checkpoint, frameworks=args.frameworks, atol=args.atol, rtol=args.rtol,
                      report_dir=report_dir, inline=args.inline, device=args.device)
    now = results.environment["versions"]
    print(f"now: " + ", ".join(f"{k} {now.get(k)}" for k in ("transformers", "torch", "tensorflow", "jax", "flax")
                              if now.get(k)))
    if results.checkpoint["fingerprint"] != base.meta["checkpoint"]["fingerprint"]:
        print(f"note: the checkpoint changed since recording (fingerprint {base.meta['checkpoint']['fingerprint'][:12]}"
              f" -> {results.checkpoint['fingerprint'][:12]})")
    print(console.render(results.to_dict(), verbose=args.verbose))
    print(f"results: {Path(report_dir) / 'results.json'}")
    return results.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parity", description="Multi-framework parity tester for transformers checkpoints.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_check(sub)
    _add_baseline(sub)
    return parser


def _cmd_check(args) -> int:
    from .config import DEFAULT_ATOL, DEFAULT_RTOL, CheckConfig

    if not args.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    report_dir = args.report_dir or str(Path("reports") / (Path(args.path).resolve().name or "checkpoint"))
    cfg = CheckConfig(
        path=args.path, task=args.task, frameworks=args.frameworks, reference=args.reference,
        source=args.source, texts=args.texts, texts_file=args.texts_file, batch_size=args.batch_size,
        max_length=args.max_length, seed=args.seed, device=args.device,
        atol=DEFAULT_ATOL if args.atol is None else args.atol,
        rtol=DEFAULT_RTOL if args.rtol is None else args.rtol,
        outputs=args.outputs, report_dir=report_dir, inline=args.inline,
    ).validated()
    from .api import run_check
    from .report import console

    results = run_check(cfg)
    print(console.render(results.to_dict(), verbose=args.verbose))
    print(f"results: {Path(report_dir) / 'results.json'}")
    return results.exit_code


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return args.func(args)
    except ParityError as e:
        if debug:
            raise
        print(f"parity: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
