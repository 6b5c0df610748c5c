"""`python -m fame_core <command>`: train, evaluate, inspect, export, facets, compact, data describe|convert|download.

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

from .errors import FameError

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


ITEMS_HELP = ("item table: a CSV/TSV (an id column and facet columns, 'a|b' multi-valued) or a RecBole .item "
              "file; every column becomes an item facet")


def _add_data(p, required=False, help_text=None, items_flag="--items"):
    p.add_argument("--data", required=required, default=None,
                   help=help_text or "data set: a file, a folder, or 'synthetic[:key=value,...]' "
                                     "(default: the one recorded in the checkpoint)")
    p.add_argument("--kcore", type=int, default=None, help="k-core filter for raw logs (default 5)")
    flags = [items_flag, "--item-table"] if items_flag != "--item-table" else ["--item-table"]
    p.add_argument(*flags, dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)


def _add_who(p):
    """--checkpoint, --data and which sequence: a user's (--user, --split) or a hand-made one."""
    p.add_argument("--checkpoint", required=True)
    _add_data(p, items_flag="--item-table")   # --items is the hand-made sequence here
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the data set")
    who.add_argument("--items", help="a hand-made sequence: comma-separated item ids, oldest first")
    p.add_argument("--target", type=int_in(1), default=None, help="with --items: the item to rank")
    p.add_argument("--split", choices=["valid", "test"], default="test")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m fame_core", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    t = sub.add_parser("train", help="train SASRec or FAME, early-stopped on validation NDCG@20")
    t.add_argument("--data", default="synthetic", help="data set (default: the synthetic facet world)")
    t.add_argument("--kcore", type=int, default=None, help="k-core filter for raw logs (default 5)")
    t.add_argument("--items", "--item-table", dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)
    t.add_argument("--model", choices=["sasrec", "fame"], default="fame")
    t.add_argument("--heads", type=int, default=2, help="H (default 2)")
    t.add_argument("--experts", type=int, default=4, help="N experts per head (FAME; default 4)")
    t.add_argument("--layers", type=int, default=2, help="L blocks (default 2)")
    t.add_argument("--hidden", type=int, default=64, help="d (default 64)")
    t.add_argument("--max-len", type=int, default=50)
    t.add_argument("--dropout", type=float, default=0.5)
    t.add_argument("--attn-dropout", type=float, default=None, help="default: --dropout")
    t.add_argument("--residual", action="store_true", help="FAME: add x's h-th slice to f^(h) (SPEC §3 option)")
    t.add_argument("--epochs", type=int, default=200, help="at most this many epochs (default 200)")
    t.add_argument("--patience", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    t.add_argument("--init-from", default=None, help="a SASRec checkpoint: FAME is built from it (paper pipeline), or with --model sasrec it is trained on (equal-budget control)")
    t.add_argument("--warm", action="store_true", help="with --init-from: warm-start expert queries and W_f")
    o = t.add_argument_group("facet objectives (off by default; see fame_core/objectives.py)")
    o.add_argument("--gate-decisive", type=float, default=0.0, help="weight: decisive per-user gates, balanced per batch")
    o.add_argument("--router-decisive", type=float, default=0.0, help="weight: decisive expert choice, balanced per batch")
    o.add_argument("--load-balance", type=float, default=0.0, help="weight: Switch-Transformer expert load balancing")
    o.add_argument("--router-z", type=float, default=0.0, help="weight: ST-MoE router z-loss")
    o.add_argument("--head-diversity", type=float, default=0.0, help="weight: decorrelate heads' item sub-embeddings")
    o.add_argument("--facet-heads", default="", help="tie head h to the h-th facet, e.g. genre,actor")
    o.add_argument("--facet-weight", type=float, default=0.0, help="weight of the facet probes of --facet-heads")
    o.add_argument("--facet-exclusive", type=float, default=0.0,
                   help="weight: remove the other --facet-heads facets from each tied head")
    o.add_argument("--gate-competence", type=float, default=0.0,
                   help="weight: teach the gate which head predicts the target best (KL to the heads' softmaxed log-likelihoods)")
    o.add_argument("--competence-temperature", type=float, default=1.0, help="temperature of the competence target (default 1)")
    o.add_argument("--head-dropout", type=float, default=0.0, help="probability of dropping a head's share of the score while training")
    o.add_argument("--expert-diversity", type=float, default=0.0, help="weight: squared cosine between a head's expert queries")
    # issue 18: large catalogues and multi-process runs (torchrun --nproc_per_node=N -m fame_core train ...)
    s = t.add_argument_group("large catalogues (see fame_core/sampled.py, docs/scaling.md)")
    s.add_argument("--loss", choices=["full", "sampled"], default="full",
                   help="full softmax over all items (default), or sampled: in-batch + uniform negatives, logQ-corrected")
    s.add_argument("--negatives", type=int_in(0, 10**7), default=1024,
                   help="with --loss sampled: uniform negatives per batch besides the in-batch ones (default 1024)")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--resume", action="store_true", help="continue the killed run in --out")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint already at --out (a folder with other files is never replaced)")
    t.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue with training settings other than the recorded ones (recorded)")
    t.add_argument("--json", action="store_true")

    e = sub.add_parser("evaluate", help="full-ranking HR/NDCG@5/10/20 and MRR of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    _add_data(e)
    e.add_argument("--split", choices=["valid", "test"], default="test")
    e.add_argument("--merge", default="gated", help="gated, concat or head:h")
    e.add_argument("--no-mask-history", action="store_true", help="rank the user's history items too")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true")

    i = sub.add_parser("inspect", help="per-head lists, gates, attention and router for one user or sequence")
    _add_who(i)
    i.add_argument("--top-k", type=int_in(1, 10_000), default=20, help="list length (1-10000; default 20)")
    i.add_argument("--include-history", action="store_true", help="let history items into the lists")
    i.add_argument("--json", action="store_true")

    x = sub.add_parser("export", help="paper-ready figures of one user: PDF, SVG, PNG, CSV and sidecar JSON")
    _add_who(x)
    x.add_argument("--top-k", type=int_in(1, 100), default=10, help="list length in the case-study figure (default 10)")
    x.add_argument("--formats", default="pdf,svg,png", help="comma-separated, of pdf, svg, png")
    x.add_argument("--out", required=True, help="directory to write the figures to")
    x.add_argument("--json", action="store_true")

    f = sub.add_parser("facets", help="do heads, gates and experts capture item facets? (against controls)")
    f.add_argument("--checkpoint", required=True)
    _add_data(f)
    f.add_argument("--users", type=int_in(1, 10**7), default=200, help="users sampled for the attention-faithfulness test")
    f.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    f.add_argument("--json", action="store_true")

    c = sub.add_parser("compact", help="copy a finished checkpoint with float16 weights (for bundling)")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--out", required=True, help="a new folder for the float16 copy")
    c.add_argument("--overwrite", action="store_true", help="replace a checkpoint already at --out")
    c.add_argument("--json", action="store_true")

    d = sub.add_parser("data", help="data set tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="subcommand")
    ds = dsub.add_parser("describe", help="statistics of a data set (users, items, actions, facets)")
    ds.add_argument("path", help="a file, a folder, or 'synthetic'")
    ds.add_argument("--kcore", type=int, default=None)
    ds.add_argument("--items", "--item-table", dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)
    ds.add_argument("--json", action="store_true")
    dc = dsub.add_parser("convert", help="write any readable data set as a sequence file (+ item ids, attributes)")
    dc.add_argument("path", help="a file, a folder, or 'synthetic'")
    dc.add_argument("--to", required=True, help="the sequence file to write, e.g. out/ml.txt")
    dc.add_argument("--kcore", type=int, default=None)
    dc.add_argument("--overwrite", action="store_true", help="replace files a previous convert wrote at --to")
    dc.add_argument("--items", "--item-table", dest="item_table", default=None, metavar="FILE", help=ITEMS_HELP)
    dc.add_argument("--json", action="store_true")
    dd = dsub.add_parser("download", help="fetch a public data set, checksums verified")
    dd.add_argument("name", help="beauty, sports, toys, yelp, ml-latest-small, ml-1m or ml-20m")
    dd.add_argument("--to", default=None, help="parent directory (default: the data home, $FAME_DATA or "
                                                 "~/.cache/fame, where checkpoints find it); files go to TO/NAME")
    dd.add_argument("--mirror", default=os.environ.get("FAME_MIRROR"), help="replace the scheme and host of every address, e.g. http://127.0.0.1:8000")
    dd.add_argument("--overwrite", action="store_true", help="replace files at the destination that do not verify")
    dd.add_argument("--json", action="store_true")
    return parser


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _metrics_table(metrics: dict) -> str:
    keys = list(metrics)
    return "  ".join(f"{k:>8}" for k in keys) + "\n" + "  ".join(f"{metrics[k]:8.4f}" for k in keys)


def cmd_train(a) -> int:
    from .data import load_dataset
    from .models import ModelConfig
    from .training import TrainConfig, train

    if not a.resume:  # refuse a bad --out before reading any data
        from .checkpoint import check_checkpoint_out

        check_checkpoint_out(a.out, overwrite=a.overwrite)
    dataset = _with_items(load_dataset(a.data, kcore_k=a.kcore), a.item_table)
    try:
        mcfg = ModelConfig(model=a.model, n_items=dataset.n_items, d=a.hidden, n_layers=a.layers,
                           n_heads=a.heads, n_experts=a.experts if a.model == "fame" else 1, max_len=a.max_len,
                           dropout=a.dropout, attn_dropout=a.dropout if a.attn_dropout is None else a.attn_dropout,
                           residual=a.residual)
    except ValueError as err:
        raise FameError(str(err)) from None
    from .objectives import FacetObjectives

    objectives = FacetObjectives(gate_decisive=a.gate_decisive, router_decisive=a.router_decisive,
                                 load_balance=a.load_balance, router_z=a.router_z,
                                 head_diversity=a.head_diversity, facet_heads=a.facet_heads, facet_weight=a.facet_weight,
                                 facet_exclusive=a.facet_exclusive, gate_competence=a.gate_competence,
                                 competence_temperature=a.competence_temperature, head_dropout=a.head_dropout,
                                 expert_diversity=a.expert_diversity)
    tcfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patience=a.patience, seed=a.seed,
                       device=a.device, init_from=a.init_from, warm=a.warm, objectives=objectives,
                       loss=a.loss, negatives=a.negatives)
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


def _needs_data(model, what: str) -> FameError:
    """The one-line error when the recorded data set is nowhere: what to download or pass."""
    from .datahome import missing_message
    return FameError(f"{what} needs the data set: {missing_message(model.dataset_record)}")


def _open(a):
    from .inspection import load
    from .training import resolve_device

    data = a.data
    if data is not None and (a.kcore is not None or a.item_table is not None):
        from .data import load_dataset
        data = _with_items(load_dataset(data, kcore_k=a.kcore), a.item_table)
    notes = io.StringIO()   # load's "data set not found" note: repeated only where no error says it
    with contextlib.redirect_stderr(notes):
        model, dataset = load(a.checkpoint, data=data, device=str(resolve_device(getattr(a, "device", "cpu"))))
    if dataset is None and getattr(a, "user", None) is None and a.command in ("inspect", "export"):
        sys.stderr.write(notes.getvalue())
    return model, dataset if data is not None else _with_items(dataset, a.item_table)


def cmd_evaluate(a) -> int:
    from .evaluate import evaluate

    model, dataset = _open(a)
    if dataset is None:
        raise _needs_data(model, "evaluation")
    try:
        result = evaluate(model, dataset, a.split, mask_history=not a.no_mask_history, merge=a.merge,
                          progress=not a.json and sys.stderr.isatty())
    except ValueError as err:
        raise FameError(str(err)) from None
    result["checkpoint"] = a.checkpoint
    if a.json:
        _print_json(result)
    else:
        print(f"{a.checkpoint} on {dataset.name}, {a.split} split, {result['users']} users, "
              f"history {'masked' if result['mask_history'] else 'not masked'}, merge {a.merge}")
        print(_metrics_table(result["metrics"]))
    return 0


def _sequence(a, dataset, model=None):
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
    res = inspect(model, seq, target=target, top_k=a.top_k, exclude_history=not a.include_history)
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
    from .export import FORMATS, export_all
    from .inspection import inspect

    formats = [f.strip().lower() for f in a.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise FameError(f"--formats: unknown format {unknown[0] if unknown else '(none)'}; use pdf, svg, png")
    from .safe_io import check_output_dir, owned_by_manifest, write_export

    check_output_dir(a.out, owned_by_manifest, "figure export")   # before any work: never write into others' files
    model, dataset = _open(a)
    seq, target = _sequence(a, dataset, model)
    res = inspect(model, seq, target=target, top_k=max(a.top_k, 20))
    who = f"user {a.user}" if a.user is not None else "hand-made sequence"
    meta = {"checkpoint": str(a.checkpoint), "dataset": model.dataset_record.get("name"), "user": a.user,
            "split": a.split, "sequence": [int(v) for v in res.sequence], "target": target,
            "title": f"Case study: {who}"}
    label = dataset.label if dataset is not None else (lambda v: f"item {v}")
    files = write_export(a.out, lambda tmp: export_all(res, tmp, meta, label=label, k=a.top_k, formats=formats))
    if a.json:
        _print_json({"out": str(a.out), "files": [str(f) for f in files]})
    else:
        print(f"wrote {len(files)} files to {a.out} (case study, gates, and per head: expert attention, router, "
              "attention maps; each with .csv numbers and .json sidecar)")
    return 0


def cmd_facets(a) -> int:
    import pandas as pd

    from .facets import facet_report

    model, dataset = _open(a)
    if dataset is None:
        raise _needs_data(model, "facet measures")
    report = facet_report(model, dataset, n_users=a.users, seed=a.seed)
    report["checkpoint"] = str(a.checkpoint)
    if a.json:
        _print_json(report)
        return 0
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
        from .download import download

        result = download(a.name, a.to, mirror=a.mirror, progress=not a.json and sys.stderr.isatty(), overwrite=a.overwrite)
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

    out = compact_checkpoint(a.checkpoint, a.out, overwrite=a.overwrite)
    size = (out / "weights.safetensors").stat().st_size
    if a.json:
        _print_json({"checkpoint": str(out), "weights_bytes": size})
    else:
        print(f"wrote {out} (weights {size / 2**20:.1f} MiB, float16); re-evaluate it with "
              f"'python -m fame_core evaluate --checkpoint {out}'")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "inspect": cmd_inspect, "export": cmd_export,
               "facets": cmd_facets, "compact": cmd_compact, "data": cmd_data}[args.command]
    try:
        return handler(args)
    except FameError as err:
        print(f"error: {err}", file=sys.stderr)
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
        print(f"error: {err.__class__.__name__}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
