"""``sweep data prepare``: tokenize a corpus into llm.c shards (FineWeb, local files or the bundled wiki),
with GPT-2's BPE, plain UTF-8 bytes or a sentencepiece BPE trained on the train split.

    sweep data prepare --bundled                                   # the offline corpus, into the shared cache
    sweep data prepare --bundled --tokenizer bytes                 # the same, one token per byte
    sweep data prepare --files 'corpus/*.jsonl' --out data/mine    # local .txt/.jsonl/.parquet files
    sweep data prepare --dataset HuggingFaceFW/fineweb --out data/fineweb --max-tokens 100000000
"""

from __future__ import annotations

import argparse
import os

from search_spaces.errors import ConfigError

FINEWEB = "HuggingFaceFW/fineweb"
# PrepareConfig field -> the option that sets it, so errors name what the user typed.
_OPTION_FOR_FIELD = {
    "data.out_dir": "--out",
    "data.source": "--dataset/--files/--bundled",
    "data.tokenizer": "--tokenizer",
    "data.dataset": "--dataset",
    "data.files": "--files",
    "data.text_field": "--text-field",
    "data.shard_tokens": "--shard-tokens",
    "data.val_fraction": "--val-fraction",
    "data.val_tokens": "--val-tokens",
    "data.max_tokens": "--max-tokens",
    "data.max_documents": "--max-documents",
    "data.num_proc": "--num-proc",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` with its ``prepare`` subcommand."""
    data = subparsers.add_parser("data", help="prepare token data")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser(
        "prepare",
        help="tokenize a corpus into train/val shards",
        description="Tokenize text (GPT-2 BPE, UTF-8 bytes or a BPE trained here) into llm.c uint16 shards plus meta.json, which "
        "names the tokenizer. Documents are held out for val by a hash of their text, so reruns give the same split.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="NAME", help=f"Hugging Face dataset, streamed (e.g. {FINEWEB})")
    src.add_argument("--files", nargs="+", metavar="GLOB", help="local .txt (one document per file), .jsonl/.json or .parquet")
    src.add_argument("--bundled", action="store_true", help="the offline English Wikipedia summaries")
    p.add_argument("--tokenizer", default="gpt2", metavar="NAME",
                   help="gpt2 (tiktoken's GPT-2 BPE, 50,257 ids; the default), bytes (one id per UTF-8 byte + EOT: "
                   "257 ids) or spN, e.g. sp1024 (a sentencepiece BPE of N ids trained on the train split, saved "
                   "with the shards)")
    p.add_argument("--dataset-config", metavar="C", help=f"dataset config (default sample-10BT for {FINEWEB})")
    p.add_argument("--split", default="train", help="dataset split to read (default train)")
    p.add_argument("--text-field", default="text", metavar="F", help="column holding the text (default text)")
    p.add_argument("--out", metavar="DIR", help="output folder (must not exist or be empty); "
                   "with --bundled and no --out: the shared cache used by default runs")
    p.add_argument("--shard-tokens", type=int, help="tokens per shard (default 100M)")
    p.add_argument("--val-fraction", type=float, help="fraction of documents held out for val (default 0.01)")
    p.add_argument("--val-tokens", type=int, help="cap on val tokens; later held-out documents go to train")
    p.add_argument("--max-tokens", type=int, help="stop after this many tokens in total (a CPU-sized slice)")
    p.add_argument("--max-documents", type=int, help="read at most this many documents")
    p.add_argument("--num-proc", type=int, help="tokenizer threads (default: CPU count)")
    p.set_defaults(func=run_prepare)


def _config(args: argparse.Namespace):
    from trainable.data.prepare import PrepareConfig

    if args.out is None:
        raise ConfigError("--out", "required (except for --bundled, which defaults to the shared cache)")
    kwargs: dict = {"out_dir": args.out, "tokenizer": args.tokenizer}
    if not args.bundled:  # the bundled corpus has its own fixed text column
        kwargs.update(split=args.split, text_field=args.text_field)
    if args.bundled:
        from trainable.data.bundled import BUNDLED_SHARD_TOKENS, BUNDLED_VAL_FRACTION

        kwargs.update(source="bundled", val_fraction=BUNDLED_VAL_FRACTION, shard_tokens=BUNDLED_SHARD_TOKENS)
    elif args.files:
        kwargs.update(source="files", files=args.files)
    else:
        config = args.dataset_config if args.dataset_config is not None else ("sample-10BT" if args.dataset == FINEWEB else None)
        kwargs.update(source="hf", dataset=args.dataset, dataset_config=config)
    for option in ("shard_tokens", "val_fraction", "val_tokens", "max_tokens", "max_documents", "num_proc"):
        if getattr(args, option) is not None:
            kwargs[option] = getattr(args, option)
    return PrepareConfig(**kwargs)


def _print_summary(folder: str, meta: dict) -> None:
    print(f"wrote {folder} ({meta['documents']} documents, tokenizer {meta['tokenizer']})")
    for split, info in meta["splits"].items():
        print(f"  {split:5s} {info['tokens']:>13,} tokens {info['bytes']:>15,} bytes "
              f"{info['documents']:>10,} docs {len(info['shards'])} shard(s)")


def run_prepare(args: argparse.Namespace) -> int:
    """Validate everything (ConfigError naming the option), then prepare and print what was written."""
    import json

    if args.bundled and args.out is None and not any(
        getattr(args, o) is not None for o in ("shard_tokens", "val_fraction", "val_tokens", "max_tokens", "max_documents")
    ):
        from trainable.data.bundled import ensure_bundled_data
        from trainable.data.tokenizers import check_tokenizer_name

        check_tokenizer_name(args.tokenizer, "--tokenizer")
        folder = ensure_bundled_data(tokenizer=args.tokenizer)
        _print_summary(str(folder), json.loads((folder / "meta.json").read_text()))
        return 0
    from trainable.data.prepare import prepare

    try:
        cfg = _config(args)
        cfg.validate()
        meta = prepare(cfg)
    except ConfigError as err:
        option = _OPTION_FOR_FIELD.get(err.field, err.field)
        raise ConfigError(option, err.message) from None
    _print_summary(os.path.abspath(cfg.out_dir), meta)
    return 0
