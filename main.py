"""Wanda-compatible CLI: one-shot pruning of LLMs, with selectivity-aware methods."""
from __future__ import annotations

import argparse
import logging
import sys

from lib.errors import UserError
from lib.eval import PPL_FORMULAS
from lib.methods import method_names


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag ends with one `error:` line, like every other user error."""

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m",
                   help="Hub id, local HF directory, .gguf file, or the alias smollm2-135m")
    p.add_argument("--seed", type=int, default=0, help="seed for calibration data sampling")
    p.add_argument("--nsamples", type=int, default=128, help="number of calibration samples")
    p.add_argument("--sparsity_ratio", type=float, default=0, help="sparsity level")
    p.add_argument("--sparsity_type", default="unstructured",
                   help="unstructured, or N:M such as 2:4 or 4:8")
    p.add_argument("--prune_method", default=None,
                   help=f"one of {', '.join(method_names())} (omit, or dense, for the dense model)")
    p.add_argument("--cache_dir", default="llm_weights", help="Hugging Face download cache")
    p.add_argument("--use_variant", action="store_true",
                   help="Wanda's per-row cumulative-sum variant (unstructured only)")
    p.add_argument("--save", default=None,
                   help="directory for log_/results_ files (default out/<model>/<type>_<ratio>)")
    p.add_argument("--save_model", default=None, help="directory to save the pruned model")
    p.add_argument("--eval_zero_shot", action="store_true",
                   help="zero-shot accuracy with lm-evaluation-harness 0.4 on the model in memory")
    p.add_argument("--tasks", default=None,
                   help="comma-separated lm-eval tasks (default: Wanda's seven: boolq, rte, "
                        "hellaswag, winogrande, arc_easy, arc_challenge, openbookqa)")
    p.add_argument("--tasks_include_path", default=None,
                   help="directory of extra lm-eval task YAML files (e.g. local datasets)")
    p.add_argument("--zero_shot_limit", type=int, default=None,
                   help="at most this many examples per task (default all)")
    p.add_argument("--zero_shot_batch_size", type=int, default=1, help="lm-eval batch size")
    p.add_argument("--seqlen", type=int, default=None,
                   help="calibration/evaluation window (default min(context, 4096))")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"],
                   help="auto = float16 on CUDA, float32 on CPU")
    p.add_argument("--data_dir", default=None,
                   help="offline data root laid out like ../shared/data (default: the Hub)")
    p.add_argument("--calib_dataset", default="c4", choices=["c4", "wikitext2"])
    p.add_argument("--eval_windows", type=int, default=None,
                   help="evaluate only the first N perplexity windows (default all)")
    p.add_argument("--ppl_formula", default="exact", choices=PPL_FORMULAS,
                   help="exact: total NLL / predicted tokens; wanda: the Wanda repo's formula")
    sel = p.add_argument_group("selectivity (wanda_idf, wanda_spiky, wanda_select)")
    sel.add_argument("--activity_quantile", type=float, default=0.6,
                     help="q: a channel is active on a token where |x| exceeds the q-quantile "
                          "of all |x| of the layer input")
    sel.add_argument("--spike_top_frac", type=float, default=0.1,
                     help="f: spikiness = mean of a channel's top f share of |x| / its mean |x|")
    sel.add_argument("--idf_offset", type=float, default=0.0,
                     help="added to idf = log((T+1)/(n+1)); 1 = smooth idf")
    sel.add_argument("--idf_power", type=float, default=1.0, help="alpha: idf exponent")
    sel.add_argument("--spiky_power", type=float, default=1.0, help="beta: spikiness exponent")
    sel.add_argument("--selectivity_floor", type=float, default=None,
                     help=">0: the selectivity factor, divided by its median over channels, "
                          "never goes below this (default 1 for wanda_idf and wanda_select, "
                          "0 = the faithful formula, for wanda_spiky)")
    sel.add_argument("--selectivity_stats", default="histogram", choices=["histogram", "exact"],
                     help="histogram: bounded memory; exact: stores activations")
    sel.add_argument("--save_stats", default=None,
                     help="write every pruned linear's input statistics to this .safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results of a different configuration in --save")
    p.add_argument("--run_name", default=None,
                   help="a label stored in the results (sweeps name method variants with it)")
    p.add_argument("--skip_if_done", action="store_true",
                   help="exit at once when --save already holds this configuration's finished "
                        "results (resumable sweeps)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        from lib.pipeline import run

        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
