"""main.py's flags, grouped, each with its default and valid range. Method options are derived
from the method table (lib/pruning/methods.py): one flag per declared option, grouped by the methods that
read it. Building the parser needs no torch, so --help answers at once."""
from __future__ import annotations

import argparse
import sys

from lib.arch.experts import MOE_CALIBRATION
from lib.evaluation.perplexity import PPL_FORMULAS
from lib.evaluation.zeroshot import DEFAULT_TASKS
from lib.io.embedded import EMBEDDED
from lib.pruning import layer_sparsity
from lib.pruning.methods import DENSE, METHODS, all_options, methods_with
from lib.recovery.plan import MODES as RECOVERY_MODES

EXAMPLES = """examples:
  python main.py --model smollm2-135m --prune_method wanda --sparsity_ratio 0.5 \\
      --nsamples 32 --seqlen 512 --eval_windows 64 --data_dir ../shared/data
  python main.py --model meta-llama/Llama-2-7b-hf --prune_method sparsegpt --sparsity_type 2:4
  python main.py --model gemma3-270m --prune_method wanda_spiky --sparsity_type 2:4 \\
      --data_dir ../shared/data --skip_if_done
"""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag ends with one `error:` line, like every other user error."""

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _option_group_title(names: list[str]) -> str:
    return f"options of {', '.join(names)}"


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """One flag per declared method option; a per-method default is listed per method."""
    groups: dict[tuple[str, ...], argparse._ArgumentGroup] = {}
    for option in all_options():
        users = methods_with(option)
        key = tuple(m.name for m in users)
        if key not in groups:
            groups[key] = parser.add_argument_group(_option_group_title(list(key)))
        defaults = {m.name: m.default(option) for m in users}
        if len(set(map(str, defaults.values()))) == 1:
            default_text = None
        else:
            default_text = "; ".join(f"{v:g} for {n}" if isinstance(v, float) else f"{v} for {n}"
                                     for n, v in defaults.items())
        kwargs = dict(default=None, help=option.describe(default_text))
        if option.choices:
            kwargs["choices"] = option.choices
        else:
            kwargs["type"] = option.type
        groups[key].add_argument(option.flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    methods = "\n".join(f"  {m.name:18s} {m.summary}" for m in METHODS.values())
    p = OneLineErrorParser(
        prog="main.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"methods (--prune_method):\n{methods}\n\n{EXAMPLES}",
        description="One-shot pruning of LLMs (Wanda-compatible flags), with selectivity-aware\n"
                    "methods. Writes results_<method>.json and log_<method>.txt to --save.")
    run = p.add_argument_group("run")
    run.add_argument("--model", default="smollm2-135m",
                     help="Hub id, local HF directory, .gguf file, or an alias: "
                          f"{', '.join(EMBEDDED)} (default smollm2-135m)")
    run.add_argument("--prune_method", default=None,
                     help="one of the methods listed below (default: none, i.e. "
                          f"{DENSE.name}: evaluate the dense model)")
    run.add_argument("--sparsity_ratio", type=float, default=0,
                     help="fraction of every linear's weights zeroed (default 0; in [0, 1))")
    run.add_argument("--sparsity_type", default="unstructured",
                     help="unstructured, or N:M (0 < N < M) such as 2:4 or 4:8, which keeps N of "
                          "every M consecutive inputs and sets the ratio to 1 - N/M "
                          "(default unstructured)")
    run.add_argument("--use_variant", action="store_true",
                     help="Wanda's per-row cumulative-score variant (unstructured, zeroing "
                          "row-wise methods only; default off)")
    run.add_argument("--device", default="auto",
                     help="auto, cpu, cuda or cuda:N (default auto: CUDA when available)")
    run.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"],
                     help="compute dtype (default auto: float16 on CUDA, float32 on CPU)")
    run.add_argument("--offload", action="store_true",
                     help="keep the weights in their safetensors files and bring one block at a "
                          "time onto --device (pruning and perplexity); peak memory is one block "
                          "plus activations, whatever the depth; the pruned blocks are written to "
                          "--save_model, or to a scratch folder in --save removed after the "
                          "run, so it needs the model's size in free disk (default off)")
    run.add_argument("--cache_dir", default="llm_weights",
                     help="Hugging Face download cache (default llm_weights)")

    data = p.add_argument_group("data")
    data.add_argument("--data_dir", default=None,
                      help="offline data root laid out like ../shared/data (default: the Hub)")
    data.add_argument("--calib_dataset", default="c4", choices=["c4", "wikitext2"],
                      help="calibration text (default c4; wikitext2 needs the training split)")
    data.add_argument("--nsamples", type=int, default=128,
                      help="calibration windows (default 128; >= 1)")
    data.add_argument("--seqlen", type=int, default=None,
                      help="calibration and evaluation window in tokens (default: the model's "
                           "context, at most 4096; 2 .. context)")
    data.add_argument("--seed", type=int, default=0,
                      help="seeds the calibration sampler, which picks the windows (default 0)")
    data.add_argument("--moe_calibration", default="routed", choices=MOE_CALIBRATION,
                      help="mixture-of-experts models: each expert's statistics from the tokens "
                           "the router sends it (routed), or from every token (all; the outputs "
                           "still follow the router). An expert that receives no token gets "
                           "every token's statistics (default routed)")

    _add_method_options(p)
    layers = p.add_argument_group("layer-wise sparsity (any method)")
    for option in layer_sparsity.OPTIONS:
        kwargs = dict(default=None, help=option.describe())
        if option.choices:
            kwargs["choices"] = option.choices
        else:
            kwargs["type"] = option.type
        layers.add_argument(option.flag, **kwargs)

    ev = p.add_argument_group("evaluation")
    ev.add_argument("--eval_windows", type=int, default=None,
                    help="perplexity on the first N WikiText-2 test windows only (default: all; "
                         ">= 1)")
    ev.add_argument("--ppl_formula", default="exact", choices=PPL_FORMULAS,
                    help="exact: total NLL / predicted tokens; wanda: the Wanda repository's "
                         "formula, for comparing with published numbers (default exact)")
    ev.add_argument("--eval_zero_shot", action="store_true",
                    help="zero-shot accuracy with lm-evaluation-harness 0.4 (default off)")
    ev.add_argument("--tasks", default=None,
                    help=f"comma-separated lm-eval tasks (default: {','.join(DEFAULT_TASKS)})")
    ev.add_argument("--tasks_include_path", default=None,
                    help="directory of extra lm-eval task YAML files, e.g. on local data "
                         "(default none)")
    ev.add_argument("--zero_shot_limit", type=int, default=None,
                    help="at most this many examples per task (default all; >= 1)")
    ev.add_argument("--zero_shot_batch_size", type=int, default=1,
                    help="lm-eval batch size (default 1; >= 1)")

    rec = p.add_argument_group("recovery (LoRA fine-tuning after pruning; lib/recovery/lora.py)")
    rec.add_argument("--recover", default=None, choices=RECOVERY_MODES,
                     help="lora: adapters trained through the pruning masks and merged, the "
                          "model as sparse as before; lora_dense: Wanda's protocol, the adapter "
                          "kept apart (the evaluated model is dense). Without --prune_method, "
                          "recovers a --save_model output of this tool (default off)")
    rec.add_argument("--recover_steps", type=int, default=200,
                     help="optimizer steps (default 200; >= 1)")
    rec.add_argument("--recover_lr", type=float, default=1e-4,
                     help="AdamW learning rate (default 1e-4; > 0)")
    rec.add_argument("--lora_rank", type=int, default=8, help="adapter rank (default 8; >= 1)")
    rec.add_argument("--lora_alpha", type=float, default=16.0,
                     help="adapter scale alpha / rank (default 16; > 0)")
    rec.add_argument("--lora_targets", default="all",
                     help="comma-separated Linear names to adapt, e.g. q_proj,v_proj (Wanda's "
                          "lora_ft), or all pruned Linears (default all)")
    rec.add_argument("--recover_batch", type=int, default=8,
                     help="windows per step (default 8; >= 1)")
    rec.add_argument("--recover_seqlen", type=int, default=None,
                     help="tokens per training window (default: --seqlen)")
    rec.add_argument("--recover_every", type=int, default=50,
                     help="checkpoint every N steps; a rerun resumes from it (default 50)")

    out = p.add_argument_group("output")
    out.add_argument("--save", default=None,
                     help="directory for log_/results_ files (default out/<model>/<type>_<ratio>/"
                          "<budget>, the budget naming calibration, seed, evaluation and dtype)")
    out.add_argument("--save_model", default=None,
                     help="write the pruned model (safetensors) and tokenizer here (default off)")
    out.add_argument("--save_stats", default=None,
                     help="write every pruned linear's input statistics to this .safetensors "
                          "(wanda and the selectivity methods; default off)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace results of a different configuration in --save (default off)")
    out.add_argument("--skip_if_done", action="store_true",
                     help="exit at once, with status 3, when --save already holds this "
                          "configuration's finished results (resumable sweeps; default off)")
    out.add_argument("--run_name", default=None,
                     help="a label stored in the results (sweeps name method variants with it; "
                          "default none)")
    return p
