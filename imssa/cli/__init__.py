"""The ``imssa`` command: one verb per job. Bad input prints one line naming the flag to fix
(exit 2), never a traceback.

Verbs: ``train``/``eval`` (:mod:`imssa.cli.train`), ``ptq``/``qat`` (:mod:`imssa.cli.quantize`),
``simulate``, ``analyze``, ``memristor characterize`` (:mod:`imssa.cli.memristor`), ``demo``
(:mod:`imssa.cli.demo`), ``sweep`` and ``report`` (:mod:`imssa.cli.sweep`,
:mod:`imssa.cli.report`). Every verb that computes takes ``--device`` (the torch device) and
``--threads``; the memristive device model is ``--memristor``.
"""

from __future__ import annotations

import sys

import torch

from imssa.cli import analyze, demo, memristor, quantize, report, simulate, sweep, train
from imssa.cli.common import Parser, one_line, translate
from imssa.errors import ImssaError

INTERRUPTED = "interrupted; every file already written is complete"


def build_parser() -> Parser:
    parser = Parser(prog="imssa",
                    description="Train S4D models and simulate them on analog crossbars.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    quantize.add_parser(sub)
    analyze.add_parser(sub)
    simulate.add_parser(sub)
    memristor.add_parser(sub)
    demo.add_parser(sub)
    sweep.add_parser(sub)
    report.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 2 bad input, 130 interrupted).

    Called in-process (a notebook, a test), it leaves torch's grad mode as it found it, even when
    a Ctrl-C lands inside a ``torch.no_grad`` block's entry or exit, which would otherwise leave
    autograd off for every later call."""
    grad = torch.is_grad_enabled()
    try:
        return _run(argv)
    finally:
        torch.set_grad_enabled(grad)


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a bad option (2), already printed
        return int(done.code or 0)
    verb: Parser = args.parser
    try:
        torch.set_num_threads(getattr(args, "threads", torch.get_num_threads()))
        args.func(args)
    except ImssaError as err:
        print(f"{verb.prog}: error: {translate(str(err), verb)}", file=sys.stderr)
        return 2
    except OSError as err:  # a file system refusing: name the file, no traceback
        where = f" {err.filename}" if err.filename else ""
        print(f"{verb.prog}: error: cannot access{where}: {one_line(err.strerror or err)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = verb.flag_of("resume")
        hint = f"; rerun the same command with {resume} to continue" if resume else ""
        print(f"{verb.prog}: {getattr(args, 'interrupted', INTERRUPTED)}{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
