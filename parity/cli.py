"""`parity` command line: a thin layer over parity.api.

Bad input ends with one line (what is wrong, then a Note: with the fix) and
exit 2; no traceback unless --debug.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from parity.contracts.errors import EXIT_INTERRUPTED, EXIT_USAGE, ParityError, UsageError
from parity.contracts import registry
from parity.contracts.registry import DEFAULT_KEYS, KEYS

# The parent process only tokenizes: keep transformers from importing torch/TF/JAX
# there (seconds of import, memory). Workers get these variables removed again.
QUIET_PARENT_ENV = {**{name: "0" for name in registry.use_env_names()}, "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


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
    p.add_argument("--frameworks", default=",".join(DEFAULT_KEYS),
                   help=f"comma list of {', '.join(KEYS)}, or keras for KERAS_BACKEND's (default: {','.join(DEFAULT_KEYS)})")
    p.add_argument("--reference",
                   help=f"framework the others are judged against (default: {KEYS[0]}, else {KEYS[0]}@ENV, "
                        "else the first of --frameworks)")
    p.add_argument("--source", default="auto", choices=["auto", *KEYS],
                   help="weights every framework starts from; auto = native weights when present")
    p.add_argument("--text", action="append", dest="texts", help="an input text (repeatable)")
    p.add_argument("--texts-file", help="UTF-8 file with one text per line")
    p.add_argument("--batch-size", help="number of texts (cycled) or random-id rows")
    p.add_argument("--max-length", help="truncate to this many tokens (default: 64; with --generate, fitted so "
                                        "that the prompt and the new tokens fit the model's positions)")
    p.add_argument("--seed", default="0", help="seed for random inputs (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--atol", default=None, help="absolute tolerance (default: 1e-5)")
    p.add_argument("--rtol", default=None, help="relative tolerance (default: 1e-5)")
    p.add_argument("--outputs", default="logits,hidden_states,attentions,cache",
                   help="output groups to compare: logits (head outputs), hidden_states, attentions, cache (past_key_values)")
    p.add_argument("--report-dir", help="where results.json goes (default: reports/<checkpoint folder name>-<8 hex "
                                        "of its path>, one folder per checkpoint)")
    p.add_argument("--inline", action="store_true", help="run every framework in this process (debugging)")
    p.add_argument("--verbose", "-v", action="store_true", help="print the mismatch message of every failing output")
    p.add_argument("--explain", action="store_true",
                   help="diagnose: per-layer error growth, a float64 oracle, weights, input defaults, noise floor")
    p.add_argument("--no-cache", action="store_true",
                   help="use no cache (PARITY_CACHE_DIR): convert weights again, compile Flax ops again, "
                        "hash every file again")
    p.add_argument("--save-replay", metavar="DIR", help="write the exact batch, options and versions to DIR "
                                                         "so that `parity replay DIR` reruns this case")
    p.add_argument("--timeout", help="seconds each framework's worker may take (load + run); a worker past it is "
                                     "killed and reported as crashed (default: no limit)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let Python code shipped in the checkpoint run (auto_map); off by default")
    _add_env(p)
    _add_behaviour(p)
    _add_format(p)
    p.set_defaults(func=_cmd_check)


def _add_env(p) -> None:
    p.add_argument("--env", action="append", dest="envs", metavar="NAME=PYTHON",
                   help="declare another Python environment (repeatable); FW@NAME in --frameworks / --reference "
                        "runs that framework's worker under PYTHON, e.g. --env v5=.venv-v5/bin/python "
                        "--frameworks tf,pt@v5")


def _add_behaviour(p) -> None:
    """--generate, --pipeline and the top-1 gate (parity.numerics.behaviour, parity.numerics.agreement)."""
    p.add_argument("--generate", action="store_true",
                   help="also compare model.generate per framework: tokens, first diverging step, per-step "
                        "scores, text, and why they parted (causal-lm, seq2seq-lm, vision2seq, speech-seq2seq)")
    p.add_argument("--max-new-tokens", default="20", help="tokens generated per row (default: 20)")
    p.add_argument("--num-beams", default="1", help="beam search width; 1 = greedy (default: 1)")
    p.add_argument("--pipeline", action="store_true",
                   help="also compare transformers' pipeline for the task built from each loaded model: labels, "
                        "spans, answers, fill-mask top-k, generated text")
    p.add_argument("--gate", default="elementwise", choices=["elementwise", "top1", "oracle"],
                   help="verdict: element-wise tolerance (default); top1: logits pass on top-1 agreement; oracle: "
                        "an output passes when the candidate's RMSE to a float64 run of the model is within 2x "
                        "the reference's (torch._dynamo same()'s rule; needs pt in --frameworks)")
    p.add_argument("--top1-min", help="with --gate top1: the least top-1 agreement rate that passes (default: 0.99)")
    p.add_argument("--tokenizers", default="compare",
                   help="where sides could tokenize differently (another --env, KerasHub): compare each side's own "
                        "tokenizer first (default: a differing id fails), report (shown, never failing) or off")


def _add_replay(sub) -> None:
    p = sub.add_parser("replay", help="rerun a case saved with `parity check --save-replay DIR`")
    p.add_argument("dir", help="folder written by --save-replay")
    p.add_argument("--report-dir", help="where results.json goes (default: DIR/replayed)")
    p.add_argument("--explain", action="store_true", help="add the diagnosis (see `parity check --explain`)")
    _add_format(p)
    p.set_defaults(func=_cmd_replay)


def _add_format(p) -> None:
    from parity.report.write import DEFAULT, FORMATS

    p.add_argument("--format", default=DEFAULT, dest="formats",
                   help=f"comma list of {', '.join(FORMATS)} (default: {DEFAULT})")


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="render saved results.json files again (and an index over several)",
                       description="Render reports from results.json files alone. With several files, "
                                   "each report goes next to its results (or into OUT/<folder>/) and "
                                   "an index.html linking them into OUT.")
    p.add_argument("results", nargs="+", help="results.json files written by parity check")
    p.add_argument("--out", help="output folder (default: the results file's folder; with several files, "
                                 "their common parent)")
    p.add_argument("--format", default="console,html", dest="formats",
                   help="comma list of console, json, md, html, junit (default: console,html)")
    p.add_argument("--verbose", "-v", action="store_true", help="print the mismatch message of every failing output")
    p.set_defaults(func=_cmd_report)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="write a checkpoint in another framework's format and prove it",
                       description="Convert PATH's weights to another framework (save_pretrained) in OUT, copy "
                                   "config and tokenizer files, then reload OUT natively and compare it with the "
                                   "source weight by weight and on one batch. Exit 1 when OUT does not reproduce "
                                   "the source.")
    p.add_argument("path", help="source checkpoint folder")
    p.add_argument("out", help="new folder for the converted checkpoint (results.json is written into it)")
    p.add_argument("--to", required=True, help=f"target framework: {registry.spoken(last='or')}")
    p.add_argument("--from", dest="source", default="auto",
                   help="source weights: auto (the folder's weights other than --to, "
                        f"{registry.get(KEYS[0]).label} first), {', '.join(KEYS)}")
    p.add_argument("--task", help="Auto class family (default: from config.architectures)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    p.add_argument("--verify", action="store_true", help="write nothing: prove an existing OUT against PATH again")
    p.add_argument("--weights-atol", default="0", help="allowed abs difference per weight (default: 0, exact)")
    p.add_argument("--text", action="append", dest="texts", help="an input text (repeatable)")
    p.add_argument("--seed", default="0", help="seed for random inputs (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--atol", default=None, help="absolute output tolerance (default: 1e-5)")
    p.add_argument("--rtol", default=None, help="relative output tolerance (default: 1e-5)")
    p.add_argument("--inline", action="store_true", help="run every framework in this process (debugging)")
    p.add_argument("--verbose", "-v", action="store_true", help="list every differing weight and failing output")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args) -> int:
    from parity.planning.config import DEFAULT_ATOL, DEFAULT_RTOL, _tolerance

    if not args.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    from parity.convert import convert
    from parity.report import console

    results = convert(args.path, args.out, to=args.to, source=args.source, task=args.task, force=args.force,
                      verify=args.verify, weights_atol=_tolerance("weights-atol", args.weights_atol),
                      texts=args.texts, seed=args.seed, device=args.device, inline=args.inline,
                      atol=DEFAULT_ATOL if args.atol is None else args.atol,
                      rtol=DEFAULT_RTOL if args.rtol is None else args.rtol)
    print(console.render_conversion(results.to_dict(), verbose=args.verbose))
    print(f"results: {Path(args.out) / 'results.json'}")
    return results.exit_code


def _add_support(sub) -> None:
    p = sub.add_parser("support", help="which model types and tasks have classes in which frameworks",
                       description="Print the model type x task matrix of the installed transformers (from its "
                                   "auto mappings), or, with --results, the verdicts of a folder of results.json "
                                   "files (the tiny-config matrix) as SUPPORT.md.")
    p.add_argument("--format", default="text", choices=["text", "md"], help="text table or Markdown")
    p.add_argument("--results", help="folder searched for results.json files: render verdicts (always Markdown)")
    p.add_argument("--min-frameworks", default="2", choices=["1", "2", "3"],
                   help="list pairs with a class in at least this many frameworks (default: 2)")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_support)


def _cmd_support(args) -> int:
    if args.results:
        from parity.report import support_page as support_report

        if not Path(args.results).is_dir():
            raise UsageError(f"results folder {args.results} does not exist",
                             "pass the folder that `python -m fixtures.matrix run` (or parity check "
                             "--report-dir) wrote")
        found = support_report.load_all(args.results)
        if not found:
            raise UsageError(f"no results.json under {args.results}", "run parity check with --report-dir there first")
        text = support_report.render(found)
    else:
        from parity.support_matrix import render

        text = render(args.format, int(args.min_frameworks))
    if args.output:
        from parity.contracts.atomic import write_atomic

        try:
            write_atomic(args.output, text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise UsageError(f"cannot write {args.output} ({e.strerror})", "pass --output with a writable path") from None
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def _add_baseline(sub) -> None:
    p = sub.add_parser("record", help="record a golden baseline: inputs, outputs and environment",
                       description="Run PATH in the chosen frameworks and store the batch, every output "
                                   "(float32 npz) and the environment, for `parity compare` later.")
    p.add_argument("path", help="checkpoint folder")
    p.add_argument("--out", help="baseline folder to write (default: reports/<checkpoint folder name>-<8 hex of "
                                 "its path>-baseline)")
    for flag, kw in (("--task", {}), ("--frameworks", {"default": ",".join(DEFAULT_KEYS)}), ("--reference", {}),
                     ("--source", {"default": "auto", "choices": ["auto", *KEYS]}),
                     ("--text", {"action": "append", "dest": "texts"}), ("--texts-file", {}), ("--batch-size", {}),
                     ("--max-length", {}), ("--seed", {"default": "0"}),
                     ("--device", {"default": "auto", "choices": ["auto", "cpu", "gpu"]}), ("--atol", {}),
                     ("--rtol", {}), ("--outputs", {"default": "logits,hidden_states,attentions",
                                                    "help": "output groups to keep (limits the size)"}),
                     ("--report-dir", {})):
        p.add_argument(flag, **kw)
    p.add_argument("--inline", action="store_true")
    _add_env(p)
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("compare", help="run the recorded inputs here and compare with a golden baseline",
                       description="Run the current environment on BASELINE's inputs and compare each framework "
                                   "with its recorded outputs (same tolerances, diagnosis and reports as check).")
    p.add_argument("baseline", help="folder written by `parity record`")
    p.add_argument("--checkpoint", help="checkpoint folder (default: the one recorded)")
    p.add_argument("--frameworks", help="recorded frameworks to run here (default: all recorded); FW@ENV runs one "
                                        "under an --env interpreter, judged against FW's recording")
    p.add_argument("--against", help="judge every framework against this recorded framework's outputs instead of "
                                     "its own (e.g. --frameworks pt --against tf: PyTorch now vs TF as recorded)")
    p.add_argument("--atol", help="absolute tolerance (default: the recorded one)")
    p.add_argument("--rtol", help="relative tolerance (default: the recorded one)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"])
    p.add_argument("--report-dir", help="where results.json goes (default: reports/<baseline name>-compare)")
    p.add_argument("--inline", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--explain", action="store_true", help="add the diagnosis (see `parity check --explain`)")
    _add_env(p)
    _add_format(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_record(args) -> int:
    from parity.baseline import human, record
    from parity.planning.config import DEFAULT_ATOL, DEFAULT_RTOL, CheckConfig
    from parity.report import console

    if not args.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    cfg = CheckConfig(
        path=args.path, task=args.task, frameworks=args.frameworks, reference=args.reference, source=args.source,
        texts=args.texts, texts_file=args.texts_file, batch_size=args.batch_size, max_length=args.max_length,
        seed=args.seed, device=args.device, atol=DEFAULT_ATOL if args.atol is None else args.atol,
        rtol=DEFAULT_RTOL if args.rtol is None else args.rtol, outputs=args.outputs,
        report_dir=args.report_dir, inline=args.inline, envs=args.envs or {},
    ).validated(min_frameworks=1)
    args.out = args.out or default_dir(args.path, "-baseline")
    results, size = record(cfg, args.out)
    print(console.render(results.to_dict()))
    print(f"baseline: {args.out} ({human(size)} written)")
    return results.exit_code


def default_dir(path, suffix: str = "") -> str:
    """reports/<folder name>-<8 hex of the resolved path><suffix>: two checkpoints whose folders share a name
    (the real MiniLM's is `model`) never write into one folder."""
    import hashlib

    resolved = Path(path).resolve()
    tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return str(Path("reports") / f"{resolved.name or 'checkpoint'}-{tag}{suffix}")


def _cmd_compare(args) -> int:
    from parity.baseline import Baseline, compare
    from parity.report import write

    formats = write.parse_formats(args.formats)

    if not args.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    base = Baseline.open(args.baseline)
    report_dir = args.report_dir or str(Path("reports") / f"{Path(args.baseline).resolve().name}-compare")
    rec = base.meta["environment"]["versions"]
    print(f"baseline {args.baseline}: recorded {base.meta['created']} with "
          + ", ".join(f"{k} {rec.get(k)}" for k in registry.shown_versions()
                      if rec.get(k)))
    results = compare(base, path=args.checkpoint, frameworks=args.frameworks, atol=args.atol, rtol=args.rtol,
                      report_dir=report_dir, inline=args.inline, device=args.device, explain=args.explain,
                      save="json" in formats, against=args.against, envs=args.envs or {})
    now = results.environment["versions"]
    print("now: " + ", ".join(f"{k} {now.get(k)}" for k in registry.shown_versions()
                              if now.get(k)))
    if results.checkpoint["fingerprint"] != base.meta["checkpoint"]["fingerprint"]:
        print(f"note: the checkpoint changed since recording (fingerprint {base.meta['checkpoint']['fingerprint'][:12]}"
              f" -> {results.checkpoint['fingerprint'][:12]})")
    data = results.to_dict()
    files = write.write(data, [f for f in formats if f != "json"], Path(report_dir))
    if "console" in formats:
        print(write.render(data, "console", verbose=args.verbose))
    if "json" in formats:
        print(f"results: {Path(report_dir) / 'results.json'}")
    for f in files:
        print(f"report: {f}")
    return results.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parity", description="Multi-framework parity tester for transformers checkpoints.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_check(sub)
    _add_replay(sub)
    _add_report(sub)
    _add_convert(sub)
    _add_support(sub)
    _add_baseline(sub)
    from parity import cli_pool

    cli_pool.add(sub)
    return parser


def _cmd_check(args) -> int:
    from parity.planning.config import DEFAULT_ATOL, DEFAULT_RTOL, CheckConfig

    report_dir = args.report_dir or default_dir(args.path)
    cfg = CheckConfig(
        path=args.path, task=args.task, frameworks=args.frameworks, reference=args.reference,
        source=args.source, texts=args.texts, texts_file=args.texts_file, batch_size=args.batch_size,
        max_length=args.max_length, seed=args.seed, device=args.device,
        atol=DEFAULT_ATOL if args.atol is None else args.atol,
        rtol=DEFAULT_RTOL if args.rtol is None else args.rtol,
        outputs=args.outputs, report_dir=report_dir, inline=args.inline, explain=args.explain,
        save_replay=args.save_replay, cache=not args.no_cache,
        timeout=args.timeout, trust_remote_code=args.trust_remote_code, envs=args.envs or {},
        generate=args.generate, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
        pipeline=args.pipeline, gate=args.gate, top1_min=args.top1_min, tokenizers=args.tokenizers,
    ).validated()
    return _run_and_print(cfg, None, args.formats, verbose=args.verbose)


def _run_and_print(cfg, batch, formats: str, *, verbose: bool) -> int:
    """Run, then write the reports from the saved results and print the console form."""
    from parity.api import Interrupted, run_check
    from parity.report import write
    from parity.report.progress import Progress

    formats = write.parse_formats(formats)
    if not cfg.inline:
        for key, value in QUIET_PARENT_ENV.items():
            os.environ.setdefault(key, value)
    progress = Progress()
    try:
        results = run_check(cfg, batch, progress=progress, save="json" in formats)
    except Interrupted as stop:
        progress.close()
        print(write.render(stop.results.to_dict(), "console", verbose=verbose))
        print(f"results: {stop.path} (incomplete: interrupted)")
        print(f"parity: interrupted; {stop.path} is marked complete: false", file=sys.stderr)
        return stop.results.exit_code
    finally:
        progress.close()
    data = results.to_dict()
    report_dir = Path(cfg.report_dir)
    files = write.write(data, [f for f in formats if f != "json"], report_dir)  # results.json saved by run_check
    if "console" in formats:
        print(write.render(data, "console", verbose=verbose))
    if "json" in formats:
        print(f"results: {report_dir / 'results.json'}")
    for f in files:
        print(f"report: {f}")
    if cfg.save_replay:
        print(f"replay: parity replay {cfg.save_replay}")
    return results.exit_code


def _cmd_replay(args) -> int:
    from parity.replay import load

    cfg, batch, meta = load(Path(args.dir))
    cfg.report_dir = args.report_dir or str(Path(args.dir) / "replayed")
    cfg.explain = cfg.explain or args.explain
    return _run_and_print(cfg, batch, args.formats, verbose=False)


def _sigterm_as_interrupt() -> None:
    """CI cancels jobs with SIGTERM: stop like Ctrl-C (workers stopped, incomplete results written)."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (main() called from a thread)
        pass


def _cmd_report(args) -> int:
    """Render saved results again; every file is read and rendered before anything is written."""
    import os

    from parity.report import index, write
    from parity.contracts.results import Results

    formats = write.parse_formats(args.formats)
    paths = [Path(p) for p in args.results]
    loaded = [Results.load(p).to_dict() for p in paths]
    if len(paths) == 1:
        dirs = [Path(args.out) if args.out else paths[0].parent]
        out = dirs[0]
    else:
        out = Path(args.out) if args.out else Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
        dirs, seen = [], set()
        for p in paths:
            name = p.resolve().parent.name or "results"
            stem, k = name, 1
            while name in seen:
                k += 1
                name = f"{stem}-{k}"
            seen.add(name)
            dirs.append(out / name if args.out else p.parent)
    pending = {}
    for data, d, src in zip(loaded, dirs, paths):
        files = write.render_files(data, formats, d)
        if (d / "results.json").resolve() == src.resolve():
            files.pop(d / "results.json", None)  # never rewrite the input in place
        pending.update(files)
    if len(paths) > 1:
        links = [(os.path.relpath(d / "report.html", out) if "html" in formats else None, data)
                 for data, d in zip(loaded, dirs)]
        pending[out / "index.html"] = index.render(links)
    write.check_writable(t.parent for t in pending)
    for target, text in pending.items():
        write.write_text(target, text)
    if "console" in formats:
        print("\n\n".join(write.render(data, "console", verbose=args.verbose) for data in loaded))
    for target in pending:
        print(f"report: {target}")
    worst = max((d["exit_code"] for d in loaded), default=0)
    return 0 if worst == 0 else (3 if any(d["exit_code"] == 3 for d in loaded) else 1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    debug = "--debug" in argv
    _sigterm_as_interrupt()
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return args.func(args)
    except ParityError as e:
        if debug:
            raise
        from parity.report.console import clean

        print(f"parity: error: {clean(e.one_line())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """Console entry point (`parity`, `python -m parity`): main() as the process's exit status."""
    code = main()
    if code == EXIT_INTERRUPTED:
        # Everything is written and closed by now. CPython 3.11 can still end a process that handled
        # its Ctrl-C by killing itself with SIGINT at exit (its "unhandled KeyboardInterrupt" flag is
        # set when the interrupt lands in code run through PyRun_*, and is not cleared when Python
        # code catches it; cpython gh-128130): exit 130 would read as a signal death.
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
