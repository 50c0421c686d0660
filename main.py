"""Wanda-compatible CLI: one-shot pruning of LLMs, with selectivity-aware methods.

Flags are parsed and the run is planned (flags, model context, device, data files, the save
directory, --skip_if_done) before torch or transformers are imported: refusals and skips answer
in well under a second. See `python main.py --help`.
"""
from __future__ import annotations

import logging
import sys

from lib.run.cli import build_parser
from lib.run.errors import EXIT_SKIPPED, EXIT_USER_ERROR, UserError


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        from lib.run.plan import plan_run

        plan = plan_run(args)
        if plan.already_done:
            print(f"skip: {plan.save}/results_{plan.method_name}.json already holds this "
                  "configuration's finished results", flush=True)
            return EXIT_SKIPPED
        from lib.run.pipeline import run

        return run(plan)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        from lib.io.writes import release_locks

        release_locks()  # a process ends with its locks anyway; a caller in-process goes on


if __name__ == "__main__":
    sys.exit(main())
