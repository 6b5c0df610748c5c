"""`python -m fame_core <command>`: train, evaluate, inspect, intervene, counterfactual, export, facets, compact, data.

Human-readable output and a progress bar on a terminal; `--json` prints one JSON document on
stdout for scripts. Bad input ends with a one-line `error: ...` on stderr and exit status 2,
never a traceback (set FAME_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys

from ._version import __version__
from .data import KCORE, KCORE_MAX
from .errors import ConfigError, FameError

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse with the house's one-line errors: `error: ...` and exit 2, no usage block."""

    def error(self, message):
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


def int_in(lo: int, hi: int | None = None):
    """An argparse type: a whole number written in ASCII digits, lo <= n <= hi."""
    def parse(text: str) -> int:
        t = text.strip()
        body = t[1:] if t[:1] in "+-" else t
        if not body.isascii() or not body.isdigit() or len(body) > 18:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number")
        n = int(t)
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"{n} is out of range; pass a number from {lo}"
                                             + (f" to {hi}" if hi is not None else " up"))
        return n
    parse.__name__ = "number"
    return parse


def item_ids(text: str) -> list[int]:
    """--items: comma-separated item ids in ASCII digits."""
    ids = [x for x in text.replace(" ", "").split(",") if x]
    bad = [x for x in ids if not (x.isascii() and x.isdigit() and len(x) <= 18)]
    if bad or not ids:
        raise FameError(f"--items must be comma-separated item ids (whole numbers), got {(bad or [text])[0][:40]!r}")
    return [int(x) for x in ids]


def _add_kcore(p):
    p.add_argument("--kcore", type=int_in(1, KCORE_MAX), default=None, metavar="K",
                   help=f"k-core filter of raw interaction logs: keep users and items with at least K actions "
                        f"(1-{KCORE_MAX}; default {KCORE})")


ITEMS_HELP = ("item table: a CSV/TSV (an id column and facet columns, 'a|b' multi-valued) or a RecBole .item "
              "file; every column becomes an item facet")


def _add_data(p, required=False, help_text=None, items_flag="--items"):
    p.add_argument("--data", required=required, default=None,
                   help=help_text or "data set: a file, a folder, or 'synthetic[:key=value,...]' "
                                     "(default: the one recorded in the checkpoint)")
    _add_kcore(p)
    flags = [items_flag, "--item-table"] if items_flag != "--item-table" else ["--item-table"]
    p.add_argument(*flags, dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)


# What is known of each training setting, shown at the end of its `train --help` line (issue 40):
# one status per setting, so a reader can tell the paper's settings from controls and options.
PAPER, RUN = "status: the paper's", "status: a run setting (what is computed does not depend on it)"
STATUS = {
    **{f: PAPER for f in ("d", "n_layers", "n_heads", "max_len", "dropout", "attn_dropout", "ffn_dim", "activation",
                          "n_experts", "epochs", "batch_size", "lr", "weight_decay", "patience", "init_from")},
    "seed": "status: a run setting (results are reported over seeds)", "device": RUN, "eval_batch_size": RUN,
    "residual": "status: kept, Table 2's FAME row (warm + residual, docs/results.md)",
    "warm": "status: kept, Table 2's FAME row (warm + residual, docs/results.md)",
    "reinit_last": "status: a control (the restart of the last block, docs/results.md)",
    "loss": "status: full = the paper's; bce = a control (the original SASRec loss); sampled = large catalogues",
    "negatives": "status: large catalogues (within 2.3 %% of the full softmax on Beauty, docs/scaling.md)",
    "amp": "status: GPU only; not measured on a GPU yet",
    "head_cluster_bias": "status: the chosen gate setting of issue 16 (checkpoints/*-fame-gated; docs/facets.md)",
    "router_decisive": "status: the chosen gate setting of issue 16 (with --head-cluster-bias 16, weight 0.5)",
    "expert_diversity": "status: the chosen gate setting of issue 16 (with --head-cluster-bias 16, weight 0.1)",
    "facet_weight": "status: facet probes; heads become facets on planted worlds (checkpoints/demo-facets)",
    "facet_heads": "status: facet probes; heads become facets on planted worlds (checkpoints/demo-facets)",
    "facet_exclusive": "status: facet probes; heads become facets on planted worlds (checkpoints/demo-facets)",
}


def _status(field: str) -> str:
    return f"; {STATUS[field]}" if field in STATUS else ""


def _model_options(p):
    """--model and every registered model's settings, from the config dataclasses."""
    from .models import MODELS
    from .options import add_options

    p.add_argument("--model", choices=list(MODELS), default="fame", help="which model (default fame); "
                   "status: sasrec and fame are the paper's")
    seen: set = set()
    for cls in MODELS.values():
        def note(field, cls=cls):
            shared = all(field in c.config_class.__dataclass_fields__ for c in MODELS.values())
            return ("" if shared else f" ({cls.config_class.name} only)") + _status(field)
        add_options(p, cls.config_class, seen=seen, note=note)


def _train_options(p):
    from .objectives import objectives_class
    from .options import add_options
    from .training import TrainConfig

    add_options(p, TrainConfig, note=_status)
    o = p.add_argument_group("training terms (off by default; the registry in fame_core/objectives.py)")
    add_options(o, objectives_class(), note=lambda field: _status(field) or "; status: a registered term")


def _add_who(p):
    """--checkpoint, --data and which sequence: a user's (--user, --split) or a hand-made one."""
    p.add_argument("--checkpoint", required=True)
    _add_data(p, items_flag="--item-table")   # --items is the hand-made sequence here
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the data set")
    who.add_argument("--items", help="a hand-made sequence: comma-separated item ids, oldest first")
    p.add_argument("--target", type=int_in(1), default=None, help="with --items: the item to rank")
    p.add_argument("--split", choices=["valid", "test"], default="test")


def _train_parser(sub) -> None:
    """The `train` command's options."""
    t = sub.add_parser("train", help="train SASRec or FAME, early-stopped on validation NDCG@20")
    t.add_argument("--data", default="synthetic", help="data set (default: the synthetic facet world)")
    _add_kcore(t)
    t.add_argument("--items", "--item-table", dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)
    _model_options(t)
    _train_options(t)
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--resume", action="store_true", help="continue the killed run in --out")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint already at --out (a folder with other files is never replaced)")
    t.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue with training settings other than the recorded ones (recorded)")
    t.add_argument("--json", action="store_true")


def _evaluate_parser(sub) -> None:
    """The `evaluate` command's options."""
    from .evaluate import EvalOptions
    from .options import add_options
    e = sub.add_parser("evaluate", help="full-ranking HR/NDCG@5/10/20 and MRR of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    _add_data(e)
    add_options(e, EvalOptions)
    e.add_argument("--json", action="store_true")


def _inspect_parser(sub) -> None:
    """The `inspect` command's options."""
    from .evaluate import EvalOptions
    from .options import add_options
    i = sub.add_parser("inspect", help="per-head lists, gates, attention and router for one user or sequence")
    _add_who(i)
    i.add_argument("--top-k", type=int_in(1, 10_000), default=20, help="list length (1-10000; default 20)")
    add_options(i, EvalOptions, only=("mask_history",))
    i.add_argument("--json", action="store_true")


def _export_parser(sub) -> None:
    """The `export` command's options."""
    from .lists import LABEL_RULES, TOP_K   # one default for the app and the CLI
    from .scales import DEFAULT_SCALE, SCALES

    x = sub.add_parser("export", help="paper-ready figures of one user: PDF, SVG, PNG, CSV and sidecar JSON")
    _add_who(x)
    x.add_argument("--top-k", type=int_in(1, 100), default=TOP_K,
                   help=f"list length in the case-study figure (default {TOP_K}, as in the app)")
    x.add_argument("--labels", choices=list(LABEL_RULES), default="short",
                   help="item labels: ids only, short (cut with '…' at 28 characters), full (wrapped); default short")
    x.add_argument("--width", default="double",
                   help="case-study width: single (3.3 in), double (7 in, default) or inches")
    x.add_argument("--font-size", type=float, default=None, help="case-study font size in points (default 7; 6 for single)")
    x.add_argument("--history-max", type=int, default=None,
                   help="elide the middle of histories longer than this, with a count (default: show all, wrapped)")
    x.add_argument("--scale", choices=list(SCALES), default=DEFAULT_SCALE,
                   help="colour scale of attention and router maps: unit 0..1 (default), shared 0..max over all "
                        "heads and experts, own 0..max of each map; the uniform level is marked on every bar")
    x.add_argument("--formats", default="pdf,svg,png", help="comma-separated, of pdf, svg, png")
    x.add_argument("--out", required=True, help="directory to write the figures to")
    x.add_argument("--json", action="store_true")


def _facets_parser(sub) -> None:
    """The `facets` command's options."""
    f = sub.add_parser("facets", help="do heads, gates and experts capture item facets? (against controls)")
    f.add_argument("--checkpoint", required=True)
    _add_data(f)
    f.add_argument("--users", type=int_in(1, 10**7), default=200, help="users sampled for the attention-faithfulness test")
    f.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    f.add_argument("--json", action="store_true")


def _attribution_parser(sub) -> None:
    """The `attribution` command's options."""
    # issue 14: integrated gradients vs attention, deletion-curve faithfulness over sampled users
    g = sub.add_parser("attribution", help="is attention or integrated gradients faithful? deletion-curve AOPC "
                                           "averaged over sampled users")
    g.add_argument("--checkpoint", required=True)
    _add_data(g)
    g.add_argument("--users", type=int_in(1, 10**6), default=100, help="users sampled (at least 2 input items)")
    g.add_argument("--merge", action="append", default=None, metavar="SCORE",
                   help="score to attribute: gated or head:h (repeatable; default: gated and every head)")
    g.add_argument("--steps", type=int_in(2, 1024), default=32, help="integrated-gradient steps")
    g.add_argument("--split", choices=["valid", "test"], default="test")
    g.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    g.add_argument("--json", action="store_true")


def _intervene_parser(sub) -> None:
    """The `intervene` command's options."""
    # issue 44: interventions and counterfactual histories
    v = sub.add_parser("intervene", help="knock out a head or expert, set the router or gate: before and after, "
                                         "for one user or every user of a split (Wilcoxon, bootstrap CI)")
    v.add_argument("--checkpoint", required=True)
    _add_data(v, items_flag="--item-table")
    vw = v.add_mutually_exclusive_group()
    vw.add_argument("--user", help="one user id of the data set (default: every user of --split)")
    vw.add_argument("--items", help="a hand-made sequence: comma-separated item ids, oldest first")
    v.add_argument("--target", type=int_in(1), default=None, help="with --items: the item to rank")
    v.add_argument("--split", choices=["valid", "test"], default="test",
                   help="the held-out item of --user, or the population without --user (default test)")
    v.add_argument("--ablate", action="append", default=[], metavar="SPEC",
                   help="head:H, expert:H.N, router:H[=uniform|argmax] or patch:NAME=user:V (repeatable)")
    v.add_argument("--gate", default=None, metavar="VALUE",
                   help="set the gate: uniform, rule (the history's majority head), onehot:h, fixed:w0,w1,.. or user:V")
    v.add_argument("--mode", choices=["zero", "mean"], default="zero",
                   help="head and expert ablation: zero (default) or the population mean of their output")
    v.add_argument("--k", type=int_in(1, 10_000), default=20, help="list length and HR/NDCG cut-off (default 20)")
    v.add_argument("--batch-size", type=int_in(1, 10**6), default=1024, help="users per batch (population)")
    v.add_argument("--json", action="store_true")


def _counterfactual_parser(sub) -> None:
    """The `counterfactual` command's options."""
    cf = sub.add_parser("counterfactual", help="the smallest edit of a history (remove, replace, insert an item) "
                                               "that brings the target into the top k, flips the gate or changes the top item")
    _add_who(cf)
    cf.add_argument("--goal", choices=["top-k", "flip-gate", "top-1"], default="top-k")
    cf.add_argument("--k", type=int_in(1, 10_000), default=20, help="top-k goal and list length (default 20)")
    cf.add_argument("--budget", type=int_in(1, 10), default=3, help="most edits (1-10; default 3)")
    cf.add_argument("--head", type=int_in(0), default=None, help="flip-gate: the head to make largest "
                    "(default: the second-largest gate)")
    cf.add_argument("--candidates", type=int_in(2, 10_000), default=50, help="catalogue items tried for "
                    "replacements and insertions (default 50)")
    cf.add_argument("--beam", type=int_in(1, 100), default=3, help="beam width (default 3)")
    cf.add_argument("--json", action="store_true")


def _compact_parser(sub) -> None:
    """The `compact` command's options."""
    c = sub.add_parser("compact", help="copy a finished checkpoint with float16 weights (for bundling)")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--out", required=True, help="a new folder for the float16 copy")
    c.add_argument("--overwrite", action="store_true", help="replace a checkpoint already at --out")
    c.add_argument("--gate-temperature", type=float, default=None,
                   help="FAME only: the copy's gate temperature tau (gate = softmax(logits / tau)), chosen on "
                        "validation users with experiments/gate_temperature.py (the copy's metrics are measured again); "
                        "default: the model's own")
    c.add_argument("--data", default=None, help="with --gate-temperature: the data file, where the recorded path "
                   "does not hold it")
    c.add_argument("--json", action="store_true")


def _data_parser(sub) -> None:
    """The `data` command's options."""
    d = sub.add_parser("data", help="data set tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="subcommand")
    ds = dsub.add_parser("describe", help="statistics of a data set (users, items, actions, facets)")
    ds.add_argument("path", help="a file, a folder, or 'synthetic'")
    _add_kcore(ds)
    ds.add_argument("--items", "--item-table", dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)
    ds.add_argument("--json", action="store_true")
    dc = dsub.add_parser("convert", help="write any readable data set as a sequence file (+ item ids, attributes)")
    dc.add_argument("path", help="a file, a folder, or 'synthetic'")
    dc.add_argument("--to", required=True, help="the sequence file to write, e.g. out/ml.txt")
    _add_kcore(dc)
    dc.add_argument("--overwrite", action="store_true", help="replace files a previous convert wrote at --to")
    dc.add_argument("--items", "--item-table", dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)
    dc.add_argument("--json", action="store_true")
    dd = dsub.add_parser("download", help="fetch a public data set, checksums verified")
    dd.add_argument("name", help="beauty, sports, toys, yelp, ml-latest-small, ml-1m or ml-20m")
    dd.add_argument("--to", default=None, help="parent directory (default: the data home, $FAME_DATA or "
                                                 "~/.cache/fame, where checkpoints find it); files go to TO/NAME")
    dd.add_argument("--mirror", default=os.environ.get("FAME_MIRROR"), help="replace the scheme and host of every address, e.g. http://127.0.0.1:8000")
    dd.add_argument("--overwrite", action="store_true", help="replace files at the destination that do not verify")
    dd.add_argument("--max-size", default="2G", help="refuse a download (or a zip's unpacked members) larger than this, "
                                                    "e.g. 500M, 5G (default 2G; a file of pinned size is capped at it)")
    dd.add_argument("--json", action="store_true")


COMMAND_PARSERS = (_train_parser, _evaluate_parser, _inspect_parser, _export_parser, _facets_parser,
                   _attribution_parser, _intervene_parser, _counterfactual_parser, _compact_parser, _data_parser)


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one function per command adds its options (the settings dataclasses generate those of
    train and evaluate)."""
    parser = Parser(prog="python -m fame_core", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"fame_core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for add in COMMAND_PARSERS:
        add(sub)
    return parser


def on_terminal() -> bool:
    """Progress (bars, stage lines) goes to stderr on a terminal only: quiet in logs, pipes and tests."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):   # a closed or replaced stderr
        return False


class Stages:
    """Stage lines of a long command on stderr, "[2/4] attention faithfulness ... (12 s)", on a
    terminal only (`on_terminal`), with and without --json (stdout keeps the one JSON document)."""

    def __init__(self, total: int, enabled: bool | None = None):
        import time

        self.total, self.done, self.start = total, 0, time.monotonic()
        self.enabled = on_terminal() if enabled is None else enabled

    def __call__(self, text: str) -> None:
        import time

        self.done += 1
        if self.enabled:
            sys.stderr.write(f"[{self.done}/{self.total}] {text} ({time.monotonic() - self.start:.0f} s)\n")
            sys.stderr.flush()


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _metrics_table(metrics: dict) -> str:
    keys = list(metrics)
    return "  ".join(f"{k:>8}" for k in keys) + "\n" + "  ".join(f"{metrics[k]:8.4f}" for k in keys)


def train_settings(a):
    """(model config, training config) from parsed `train` options; an option that the chosen
    model does not have is refused."""
    from .models import MODELS
    from .objectives import objectives_class
    from .options import from_args, given
    from .training import TrainConfig

    cls = MODELS[a.model].config_class
    own = given(a, cls)
    for name, other in MODELS.items():
        for field, value in given(a, other.config_class).items():
            if field not in own:
                flag = other.config_class.__dataclass_fields__[field].metadata.get("cli")
                raise ConfigError(f"{flag if isinstance(flag, str) else '--' + field.replace('_', '-')} is a "
                                  f"setting of --model {name}, not of {a.model}; drop it or pass --model {name}")
    mcfg = from_args(cls, a)
    tcfg = from_args(TrainConfig, a, objectives=from_args(objectives_class(), a))
    return mcfg, tcfg


def cmd_train(a) -> int:
    from .data import load_dataset
    from .training import train

    mcfg, tcfg = train_settings(a)  # checked before anything is read or written
    if not a.resume:  # refuse a bad --out before reading any data
        from .checkpoint import check_checkpoint_out

        check_checkpoint_out(a.out, overwrite=a.overwrite)
    dataset = _with_items(load_dataset(a.data, kcore_k=a.kcore), a.item_table)
    mcfg.n_items = mcfg.n_items or dataset.n_items
    from .distributed import is_main_process
    main = is_main_process()   # under torchrun, rank 0 alone prints
    if not a.json and main:
        print(f"training {a.model} on {dataset.name} ({dataset.n_users} users, {dataset.n_items} items) -> {a.out}")
    try:
        result = train(dataset, mcfg, tcfg, a.out, resume=a.resume, progress=sys.stderr.isatty() or not a.json,
                       overwrite=a.overwrite, allow_changes=a.allow_changes)
    except RuntimeError as err:   # under torchrun: a peer process died (gloo/NCCL read error)
        from .distributed import world_size
        if world_size() <= 1:
            raise
        raise FameError(f"another process of this run stopped ({str(err).splitlines()[0][:120]}); the last "
                        f"finished epoch is kept in {a.out}: continue with the same command and --resume") from None
    if not main:
        return 0
    if a.json:
        _print_json(result)
    else:
        print(f"best epoch {result['best_epoch']} of {result['epochs']}; checkpoint in {result['out']}")
        print("valid\n" + _metrics_table(result["valid"]))
        print("test\n" + _metrics_table(result["test"]))
    return 0


def _with_items(dataset, items):
    """The data set with the --items table's facets attached (unchanged without --items)."""
    if items is None or dataset is None:
        return dataset
    from .items import add_item_table
    return add_item_table(dataset, items)


def _needs_data(model: Recommender, what: str) -> FameError:
    """The one-line error when the recorded data set is nowhere: what to download or pass."""
    from .datahome import missing_message
    return FameError(f"{what} needs the data set: {missing_message(model.provenance.dataset)}")


def _open(a, device: str = "cpu"):
    from .checkpoint import load
    from .training import resolve_device

    data = a.data
    if data is not None and (a.kcore is not None or a.item_table is not None):
        from .data import load_dataset
        data = _with_items(load_dataset(data, kcore_k=a.kcore), a.item_table)
    notes = io.StringIO()   # load's "data set not found" note: repeated only where no error says it
    with contextlib.redirect_stderr(notes):
        model, dataset = load(a.checkpoint, data=data, device=str(resolve_device(device)))
    if dataset is None and getattr(a, "user", None) is None and a.command in ("inspect", "export"):
        sys.stderr.write(notes.getvalue())
    return model, dataset if data is not None else _with_items(dataset, a.item_table)


def cmd_evaluate(a) -> int:
    from .evaluate import EvalOptions, evaluate
    from .models import check_merge
    from .options import from_args

    opts = from_args(EvalOptions, a)
    model, dataset = _open(a, opts.device)
    check_merge(opts.merge, model.config.n_heads)
    if dataset is None:
        raise _needs_data(model, "evaluation")
    result = evaluate(model, dataset, opts.split, mask_history=opts.mask_history, merge=opts.merge,
                      batch_size=opts.batch_size, progress=not a.json and sys.stderr.isatty())
    result["checkpoint"] = a.checkpoint
    if a.json:
        _print_json(result)
    else:
        print(f"{a.checkpoint} on {dataset.name}, {opts.split} split, {result['users']} users, "
              f"history {'masked' if result['mask_history'] else 'not masked'}, merge {opts.merge}")
        print(_metrics_table(result["metrics"]))
    return 0


def _sequence(a, dataset, model: Recommender | None = None):
    """(sequence, target) from --user (with the data set) or --items/--target."""
    if a.user is not None:
        if dataset is None:
            if model is not None:
                raise _needs_data(model, "--user")
            raise FameError("--user needs the data set; pass --data PATH, or give --items instead")
        return dataset.example(dataset.user_row(a.user), a.split)
    return item_ids(a.items), a.target


def cmd_inspect(a) -> int:
    import numpy as np

    from .inspection import inspect

    model, dataset = _open(a)
    seq, target = _sequence(a, dataset, model)
    res = inspect(model, seq, target=target, top_k=a.top_k, mask_history=getattr(a, "mask_history", True))
    label = dataset.label if dataset is not None else (lambda v: f"item {v}")
    if a.json:
        out = res.to_dict()
        out["user"] = a.user
        out["labels"] = {int(v): label(v) for v in set(np.concatenate([res.sequence] + list(res.top.values())).tolist())}
        _print_json(out)
        return 0
    who = f"user {a.user}" if a.user is not None else "hand-made sequence"
    print(f"{who}: {len(res.sequence)} items{f' (+{res.dropped} older, unseen)' if res.dropped else ''}, "
          f"target {res.target if res.target is not None else '-'}")
    print("history: " + ", ".join(label(v) for v in res.sequence[-10:]) + (" ..." if len(res.sequence) > 10 else ""))
    print("gates: " + "  ".join(f"head {h}: {g:.3f}" for h, g in enumerate(res.gates)))
    for mode in res.merge_modes:
        rank = f" (target rank {res.target_rank[mode]})" if res.target_rank else ""
        print(f"\n[{mode}]{rank}")
        for pos, v in enumerate(res.top[mode], 1):
            mark = "  <- target" if res.target is not None and v == res.target else ""
            print(f"{pos:3d}. {label(v)}{mark}")
    return 0


def cmd_export(a) -> int:
    import math

    from .export import FORMATS, WIDTHS, export_all
    from .inspection import inspect

    formats = [f.strip().lower() for f in a.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise FameError(f"--formats: unknown format {unknown[0] if unknown else '(none)'}; use pdf, svg, png")
    if not 1 <= a.top_k <= 100:
        raise FameError(f"--top-k {a.top_k}: give a list length from 1 to 100")
    try:
        width = a.width if a.width in WIDTHS else float(a.width)
    except ValueError:
        width = None
    if width is None or (not isinstance(width, str) and not (math.isfinite(width) and 2 <= width <= 12)):
        raise FameError(f"--width {a.width}: use single (3.3 in), double (7 in) or inches from 2 to 12")
    if a.font_size is not None and not (math.isfinite(a.font_size) and 4 <= a.font_size <= 14):
        raise FameError(f"--font-size {a.font_size}: use 4 to 14 points")
    if a.history_max is not None and a.history_max < 2:
        raise FameError(f"--history-max {a.history_max}: give at least 2 (or leave it out to show the whole history)")
    from .safe_io import check_output_dir, owned_by_manifest, write_export

    check_output_dir(a.out, owned_by_manifest, "figure export")   # before any work: never write into others' files
    stage = Stages(3)
    stage("reading the checkpoint and data")
    model, dataset = _open(a)
    seq, target = _sequence(a, dataset, model)
    stage("inspecting the sequence")
    res = inspect(model, seq, target=target, top_k=max(a.top_k, 20))
    who = f"user {a.user}" if a.user is not None else "hand-made sequence"
    meta = {"checkpoint": str(a.checkpoint), "dataset": model.provenance.dataset.get("name"), "user": a.user,
            "split": a.split, "sequence": [int(v) for v in res.sequence], "target": target,
            "title": f"Case study: {who}",
            "gate_temperature": model.gate_temperature}   # the gates drawn are read at it
    label = dataset.label if dataset is not None else (lambda v: f"item {v}")
    stage(f"drawing and writing the figures to {a.out}")
    files = write_export(a.out, lambda tmp: export_all(res, tmp, meta, label=label, k=a.top_k, formats=formats,
                                                       progress=stage.enabled, scale=a.scale, labels=a.labels,
                                                       width=width, font_size=a.font_size, history_max=a.history_max))
    if a.json:
        _print_json({"out": str(a.out), "files": [str(f) for f in files]})
    else:
        print(f"wrote {len(files)} files to {a.out} (case study, gates, and per head: expert attention, router, "
              "attention maps; each with .csv numbers and .json sidecar)")
    return 0


def cmd_facets(a) -> int:
    import pandas as pd

    from .facets import facet_report

    from .verdicts import cached, describe, verdicts

    model, dataset = _open(a)
    if dataset is None:
        raise _needs_data(model, "facet measures")
    progress = on_terminal()                  # bars and stage lines on a terminal only
    stage = Stages(bool(dataset.facets) + 1 + 2 * (dataset.truth is not None), enabled=progress)
    report = cached("facet-report", model, dataset, {"users": a.users, "seed": a.seed},
                    lambda: facet_report(model, dataset, n_users=a.users, seed=a.seed, stage=stage))
    # issue 41: every claim against the strongest simple rule, from the (disk-cached) cohort pass
    report["verdicts"] = verdicts(model, dataset, seed=a.seed, progress=progress)
    report["checkpoint"] = str(a.checkpoint)
    if a.json:
        _print_json(report)
        return 0
    print("verdicts against the strongest simple rule (test users; docs/verdicts.md)")
    for claim, v in report["verdicts"].items():
        print(f"  {claim:>9}: {describe(v)}")
    print()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"{a.checkpoint}: {report['model']} H={report['heads']} N={report['experts']} on {report['dataset']}\n")
        if report["alignment"]:
            cols = ["facet", "representation", "knn_agreement", "knn_chance", "probe_accuracy", "probe_shuffled_labels"]
            print("head <-> facet (linear probe and kNN agreement of item sub-embeddings)")
            print(pd.DataFrame(report["alignment"])[cols].to_string(index=False))
            print("specialisation:", report["specialisation"], "\n")
        if "gate_vs_facet" in report:
            g = report["gate_vs_facet"]
            print(f"gate <-> planted dominant facet: accuracy {g['accuracy']:.3f} (majority rate {g['majority_rate']:.3f})\n")
            cols = ["head", "facet", "mutual_information", "random_split_mi_mean", "random_router_mi_mean", "mean_top_weight",
                    "dead_experts"]
            print("expert <-> active preferred value (mutual information, nats)")
            print(pd.DataFrame(report["experts_vs_preference"])[cols].to_string(index=False), "\n")
        print("attention faithfulness (remove the most-attended item vs a random one; change of the target's rank)")
        print(pd.DataFrame(report["faithfulness"]).to_string(index=False))
    return 0


def cmd_data(a) -> int:
    from .data import load_dataset

    if a.data_command == "download":
        from .download import download, parse_size

        result = download(a.name, a.to, mirror=a.mirror, progress=not a.json and sys.stderr.isatty(), overwrite=a.overwrite,
                          max_bytes=parse_size(a.max_size))
        if a.json:
            _print_json(result)
        else:
            for name, status in result["files"].items():
                print(f"{name}: {status}")
            print(f"ready: python -m fame_core train --data {result['path']} --model sasrec --out runs/{result['name']}-sasrec")
        return 0
    if a.data_command == "convert":
        from .data import convert_outputs, write_sequence_file
        from .safe_io import check_new_file

        for path in convert_outputs(a.to):
            check_new_file(path, "--to", overwrite=a.overwrite)
        dataset = _with_items(load_dataset(a.path, kcore_k=a.kcore), a.item_table)
        files = [str(p) for p in write_sequence_file(dataset, a.to)]
        if a.json:
            _print_json({"files": files, **dataset.describe()})
        else:
            print(f"wrote {dataset.n_users} users, {dataset.n_items} items: " + ", ".join(files))
        return 0
    info = _with_items(load_dataset(a.path, kcore_k=a.kcore), a.item_table).describe()
    if a.json:
        _print_json(info)
    else:
        for k, v in info.items():
            print(f"{k:>26}: {v}")
    return 0


def cmd_compact(a) -> int:
    from .checkpoint import compact_checkpoint

    out = compact_checkpoint(a.checkpoint, a.out, overwrite=a.overwrite, gate_temperature=a.gate_temperature,
                             data=a.data)
    size = (out / "weights.safetensors").stat().st_size
    if a.json:
        _print_json({"checkpoint": str(out), "weights_bytes": size})
    else:
        print(f"wrote {out} (weights {size / 2**20:.1f} MiB, float16); re-evaluate it with "
              f"'python -m fame_core evaluate --checkpoint {out}'")
    return 0


def cmd_attribution(a) -> int:
    from .attribution import faithfulness_sample

    model, dataset = _open(a)
    if dataset is None:
        raise _needs_data(model, "attribution")
    report = dict(faithfulness_sample(model, dataset, n_users=a.users, split=a.split, seed=a.seed, merges=a.merge,
                                      n_steps=a.steps, progress=on_terminal()), checkpoint=str(a.checkpoint))
    if a.json:
        _print_json(report)
        return 0
    print(f"{a.checkpoint}: {report['users']} users, AOPC of the target's score over up to {report['max_deletions']} "
          f"deletions (larger = more faithful); {report['test']}")
    for merge, r in report["scores"].items():
        print(f"  {merge:>8}: integrated gradients {r['aopc_score_integrated_gradients']:.4f}  attention "
              f"{r['aopc_score_attention']:.4f}  random {r['aopc_score_random']:.4f}  IG better for "
              f"{r['ig_beats_attention_share']:.0%} of users (p = {r['p_value']:.3g})")
    return 0


def cmd_intervene(a) -> int:
    from .interventions import Intervention, intervene, intervene_population

    specs = list(a.ablate) + ([f"gate={a.gate}"] if a.gate is not None else [])
    if not specs:
        raise FameError("nothing to intervene on; pass --ablate head:H|expert:H.N|router:H[=uniform|argmax] "
                        "and/or --gate uniform|rule|onehot:h|fixed:w0,w1|user:V")
    for spec in a.ablate:
        if spec.replace(" ", "").startswith("gate"):
            raise FameError(f"--ablate {spec}: set the gate with --gate VALUE (uniform, rule, onehot:h, fixed:.., user:V)")
    ivs = [Intervention.parse(s, a.mode) for s in specs]          # bad syntax refused before any loading
    if a.target is not None and a.items is None:
        raise FameError("--target goes with --items; a --user's target is its held-out item")
    model, dataset = _open(a)
    label = dataset.label if dataset is not None else (lambda v: f"item {v}")
    if a.user is None and a.items is None:
        if dataset is None:
            raise _needs_data(model, "a population intervention")
        pop = intervene_population(model, dataset, a.split, ivs, k=a.k, batch_size=a.batch_size,
                                   progress=sys.stderr.isatty())
        out = dict(pop["summary"], checkpoint=str(a.checkpoint), mode=a.mode)
        if a.json:
            _print_json(out)
            return 0
        k = a.k
        print(f"{a.checkpoint} on {out['dataset']}, {a.split} split, {out['users']} users: {', '.join(out['interventions'])}")
        lo, hi = out["ci95_mean_change"]
        print(f"NDCG@{k} {out['before'][f'NDCG@{k}']:.4f} -> {out['after'][f'NDCG@{k}']:.4f} (mean change "
              f"{out[f'mean_change_NDCG@{k}']:+.4f}, 95% CI {lo:+.4f}..{hi:+.4f}); "
              f"HR@{k} {out['before'][f'HR@{k}']:.4f} -> {out['after'][f'HR@{k}']:.4f}")
        print(f"users better {out['users_better']}, worse {out['users_worse']}, unchanged {out['users_unchanged']}; "
              f"Wilcoxon p = {out['p_value']:.3g}")
        print("mean gate " + " ".join(f"{g:.3f}" for g in out["mean_gate_before"]) + " -> "
              + " ".join(f"{g:.3f}" for g in out["mean_gate_after"]))
        return 0
    seq, target = _sequence(a, dataset, model)
    res = intervene(model, [seq], None if target is None else [target], ivs, k=a.k, dataset=dataset, split=a.split)
    one = res.user(0)
    if a.json:
        _print_json({"checkpoint": str(a.checkpoint), "user": a.user, "split": a.split, "mode": a.mode,
                     "interventions": res.interventions, "k": a.k, **one})
        return 0
    who = f"user {a.user}" if a.user is not None else "hand-made sequence"
    print(f"{who}: {len(one['sequence'])} items, target {target if target is not None else '-'}; "
          f"{', '.join(res.interventions)}")
    b, f = one["before"], one["after"]
    print("gates: " + " ".join(f"{g:.3f}" for g in b["gates"]) + " -> " + " ".join(f"{g:.3f}" for g in f["gates"]))
    if b["rank"] is not None:
        print("target rank: " + "  ".join(f"{m} {b['rank'][m]} -> {f['rank'][m]}" for m in res.merges))
    for side, r in (("before", b), ("after", f)):
        print(f"\n[gated, {side}]")
        for pos, item in enumerate(r["top"]["gated"][:a.k], 1):
            mark = "  <- target" if target is not None and item == target else ""
            print(f"{pos:3d}. {label(item)}{mark}")
    return 0


def cmd_counterfactual(a) -> int:
    from .counterfactual import counterfactual

    model, dataset = _open(a)
    seq, target = _sequence(a, dataset, model)
    cf = counterfactual(model, seq, target, goal=a.goal, k=a.k, budget=a.budget, candidates=a.candidates,
                        beam=a.beam, head=a.head)
    out = dict(cf.to_dict(), checkpoint=str(a.checkpoint), user=a.user, split=a.split)
    if cf.edited is not None:
        out["replay"] = (f"python -m fame_core inspect --checkpoint {a.checkpoint} --items {out['edited_items']}"
                         + (f" --target {target}" if target is not None else ""))
    if a.json:
        _print_json(out)
        return 0
    label = dataset.label if dataset is not None else (lambda v: f"item {v}")
    who = f"user {a.user}" if a.user is not None else "hand-made sequence"
    print(f"{who}, goal {a.goal}: {cf.message}" + (f" ({cf.searched} histories scored, {cf.seconds:.2f} s)"))
    for e in cf.edits:
        what = {"remove": f"remove {label(e['item'])}", "insert": f"insert {label(e['item'])}",
                "replace": f"replace {label(e.get('old', 0))} by {label(e['item'])}"}[e["op"]]
        print(f"  at position {e['position']}: {what}")
    if cf.found and cf.edits:
        b, f = cf.before, cf.after
        if target is not None:
            print(f"target rank (gated): {b['target_rank']['gated']} -> {f['target_rank']['gated']}")
        print("gates: " + " ".join(f"{g:.3f}" for g in b["gates"]) + " -> " + " ".join(f"{g:.3f}" for g in f["gates"]))
        print(f"top-1: {label(b['top']['gated'][0])} -> {label(f['top']['gated'][0])}")
        print(f"replay: {out['replay']}")
    return 0


def _one_line(err) -> str:
    """An error message on one line, whatever a reader put in it (a quoted newline, a control character)."""
    return " ".join("".join(c if c.isprintable() else " " for c in part) for part in str(err).splitlines())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "inspect": cmd_inspect, "export": cmd_export,
               "facets": cmd_facets, "compact": cmd_compact, "data": cmd_data,
               "attribution": cmd_attribution, "intervene": cmd_intervene,
               "counterfactual": cmd_counterfactual}[args.command]
    try:
        return handler(args)
    except FameError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; a training run continues with --resume", file=sys.stderr)
        return 130
    except (OSError, ValueError) as err:  # unreadable paths and the like: still one line
        if os.environ.get("FAME_DEBUG"):
            raise
        print(f"error: {err.__class__.__name__}: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
