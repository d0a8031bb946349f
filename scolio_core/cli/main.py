"""`scolio`: the command-line entry point.

An explicit table of subcommands. Each lives in `scolio_core/cli/<module>.py`, which defines
`add_arguments(parser)` and `run(args) -> int`; its module docstring's first line is the one-line help.
Modules are imported only when their command runs, so `scolio --help` stays fast (no torch import).
Errors (ScolioError, OSError) print as one line with control characters escaped (`error_line`);
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scolio_core import __version__
from scolio_core.errors import ScolioError, one_line

# name -> (module under scolio_core.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "Write a synthetic Scoliosis1K stand-in (pose + silhouette roots, partitions) to a directory."),
    "inspect": ("inspect", "Check a data root against a partition and print class counts and frame statistics."),
    "render": ("render", "Export skeleton maps as (T, 2, 64, 64) uint8 pkl files in OpenGait's heatmap layout."),
    "train": ("train", "Run one training job from a YAML config (no Ray), writing checkpoints."),
    "eval": ("evaluate", "Evaluate a checkpoint on the val or test split (test goes through the lockbox)."),
    "predict": ("predict", "Predict classes for pose/silhouette pkl files with a checkpoint."),
    "import-checkpoint": ("import_checkpoint", "Convert an OpenGait or DRF-author checkpoint into a scoliotune checkpoint."),
    "audit": ("audit", "State how a sweep selected its winner and how often test was evaluated."),
    "report": ("report", "Rebuild results/<sweep>/ (CSV, Markdown, plots) from MLflow alone."),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog="scolio", parents=[common],
        description="scoliotune: Scoliosis1K data, skeleton maps, training, evaluation and sweep audits.",
        epilog="Sweeps run as scripts: python sweeps/representation.py (see README.md).")
    parser.add_argument("--version", action="version", version=f"scoliotune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_line) in COMMANDS.items():
        sub.add_parser(name, help=help_line, description=help_line, parents=[common], add_help=False)
    return parser


def error_line(exc: BaseException) -> str:
    """The one line an error prints as: surrounding whitespace stripped, every control character escaped.

    Messages quote names from outside (a folder named with a newline and an ESC would otherwise print two lines
    and drive the terminal), and a wrapped library message may span lines: escaping keeps both on one line.
    """
    return one_line(str(exc).strip()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let its module add its own arguments.
    known, _ = parser.parse_known_args(argv)
    if known.command is None:
        parser.print_help()
        return 1
    module_name, help_line = COMMANDS[known.command]
    module = importlib.import_module(f"scolio_core.cli.{module_name}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    command_parser = argparse.ArgumentParser(prog=f"scolio {known.command}", description=help_line,
                                             parents=[common])
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[argv.index(known.command) + 1:])
    args.debug = args.debug or known.debug
    try:
        return int(module.run(args) or 0)
    except (ScolioError, OSError) as exc:
        if args.debug:
            raise
        print(f"scolio {known.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scolio {known.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
