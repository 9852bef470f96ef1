"""Every bad-input case of the command line, in one table: each is refused before any work.

A case is (argv, exit code, message fragment). The argv is appended to a valid command
line of its subcommand (a tiny image folder, a fresh ``--out`` and ``--cache-dir``), so
the case's own option is what fails; each must exit with code 2, print the fragment on
stderr without a traceback, and leave ``--out`` and the feature cache not created.
Placeholders: ``{data}`` the image folder, ``{file}`` an existing file, ``{missing}`` a path
that does not exist, ``{yaml}`` a config file holding the case's ``yaml`` text, ``{run}`` a
run folder, ``{index}`` an index folder with one image added to it, ``{bad}`` a folder of
list files (``bad/lists``) or a CSV (``bad/data.csv``) holding the case's ``BAD_DATA`` lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from deephash.cli import COMMANDS, build_config, build_parser, main
from deephash.config import _leaves, check_fields
from deephash.errors import ConfigError
from deephash.studies.baseline_config import BaselineConfig
from deephash.training.config import TrainConfig

Case = tuple[list[str], int, str]

CASES: dict[str, Case] = {
    # names: argparse's own error, from the registries
    "loss": (["train", "--loss", "arcface"], 2,
             "argument --loss: invalid choice: 'arcface' (choose from 'contrastive'"),
    "miner": (["train", "--miner", "hardest"], 2, "argument --miner: invalid choice: 'hardest'"),
    "reduction": (["train", "--reduction", "median"], 2, "argument --reduction: invalid choice"),
    "protocol": (["baseline", "--protocol", "nope"], 2,
                 "argument --protocol: unknown protocol 'nope'; known: auto, cifar10, "
                 "cifar10-54k, coco, dtsh-1, holdout"),
    "protocol parameter": (["baseline", "--protocol", "unseen:0"], 2,
                           "argument --protocol: protocol 'unseen:0': N must be a whole number "
                           "of held-out classes, at least 1 (e.g. unseen:2)"),
    "protocol parameter not a number": (["train", "--protocol", "unseen:x"], 2,
                                        "protocol 'unseen:x': N must be a whole number"),
    "protocol in a config file": (["baseline", "--config", "{yaml}"], 2,
                                  "--protocol (data.protocol): protocol 'unseen:-1': N must be"),
    "train distance": (["train", "--train-distance", "manhattan"], 2,
                       "argument --train-distance: invalid choice: 'manhattan'"),
    "distance": (["baseline", "--distance", "hamming"], 2, "argument --distance: invalid choice"),
    "backbone": (["baseline", "--backbone", "resnet9"], 2,
                 "argument --backbone: unknown backbone 'resnet9'; known: efficientnet_lite0, "
                 "resnet18, resnet34, resnet50, vgg16, vgg19, timm:NAME"),
    "timm backbone without a name": (["baseline", "--backbone", "timm:"], 2,
                                     "argument --backbone: backbone 'timm:': name a timm model "
                                     "after timm:"),
    "hashing method": (["hash", "--method", "sh"], 2, "argument --method: invalid choice: 'sh'"),
    "study miners": (["miner-study", "--miners", "semi-hard", "hardest"], 2,
                     "argument --miners: invalid choice: 'hardest'"),
    "index kind": (["index", "--index", "ivf4096"], 2,
                   "argument --index: unknown index 'ivf4096'; known: BFlat, BFlat-numpy"),
    "faiss factory": (["index", "--index", "IVF4096"], 2,
                      "argument --index: unknown index 'IVF4096': faiss cannot read it (could "
                      "not parse index string IVF4096); check the factory string"),
    "index parameter": (["index", "--index", "BHNSW0"], 2, "unknown index 'BHNSW0'"),
    "index parameter too large": (["index", "--index", "BHNSW99999999"], 2,
                                  "index 'BHNSW99999999': <M> must be at most 256"),
    "index into other files": (["index", "--out", "{data}"], 2, "already holds other files; "
                               "replace it with --overwrite, or choose another --out"),
    "index over the data": (["index", "--out", "{data}", "--overwrite"], 2,
                            "is not a deephash index folder (no index.json)"),
    "index into a run": (["index", "--out", "{run}", "--overwrite"], 2, "holds a deephash run"),
    "index into an index": (["index", "--out", "{index}"], 2,
                            "already holds an index; replace it with --overwrite"),
    "index over added images": (["index", "--out", "{index}", "--overwrite"], 2,
                                "holds 1 images added to the index"),
    "index over the cache": (["index", "--out", "{index}", "--overwrite", "--cache-dir",
                              "{index}/cache"], 2, "holds the feature cache"),
    "index out under a file": (["index", "--out", "{file}/index"], 2, "which is a file"),
    "cache dir under a file": (["index", "--cache-dir", "{file}/cache"], 2, "which is a file"),
    "run out under a file": (["train", "--out", "{file}/run"], 2, "which is a file"),
    "checkpoint is a folder": (["index", "--checkpoint", "{data}"], 2, "is a folder, not a file"),
    "query image is a folder": (["search", "{data}"], 2, "is a folder, not a file"),
    "search checkpoint is a folder": (["search", "--checkpoint", "{data}"], 2,
                                      "is a folder, not a file"),
    "show is not a picture": (["search", "--show", "{missing}.txt"], 2,
                              "not a picture file name; end it in .png"),
    "show is a folder": (["search", "--show", "{data}"], 2, "is a folder; name the picture file"),
    "show under a file": (["search", "--show", "{file}/x.png"], 2, "which is a file"),
    "list kind": (["list", "gizmos"], 2, "argument what: invalid choice: 'gizmos'"),
    "subcommand": (["tarin"], 2, "argument command: invalid choice: 'tarin'"),
    "not a number": (["train", "--epochs", "many"], 2, "argument --epochs: invalid int value"),
    # ranges, declared once in the config metadata
    "image size": (["baseline", "--image-size", "0"], 2,
                   "--image-size (backbone.image_size) must be at least 1, got 0"),
    "bits": (["hash", "--bits", "16", "0"], 2, "--bits (hashing.bits) must be at least 1, got 0"),
    "itq bits above the features": (["hash", "--method", "itq", "--bits", "16", "2000"], 2,
                                    "error: itq: 2000 bits exceed the 1280 feature dimensions "
                                    "its PCA can keep; give --bits 1280 or fewer"),
    "shallow procedure not frozen": (["train", "--procedure", "lsh", "--codes", "--mode",
                                      "partial"], 2, "error: --procedure lsh is fitted on the "
                                                     "frozen features: drop --mode partial"),
    "shallow procedure without codes": (["train", "--procedure", "itq"], 2,
                                        "error: --procedure itq gives binary codes: add --codes "
                                        "(or run deephash hash --method itq)"),
    "epochs": (["train", "--epochs", "0"], 2, "--epochs (training.epochs) must be at least 1"),
    "batch size": (["baseline", "--batch-size", "0"], 2, "--batch-size (extraction.batch_size) "
                   "must be at least 1, got 0"),
    "knn k": (["baseline", "--knn-k", "1", "0"], 2, "--knn-k (evaluation.knn_k) must be at least "
              "1, got 0"),
    "search k": (["search", "-k", "0"], 2, "-k must be at least 1, got 0"),
    "search rerank": (["search", "--rerank", "0"], 2,
                      "argument --rerank: '0' is not ties, none or a positive number"),
    "serve rerank": (["serve", "--rerank", "features"], 2,
                     "argument --rerank: 'features' is not ties, none or a positive number"),
    "num workers": (["train", "--num-workers", "-1"], 2, "--num-workers (extraction.num_workers) "
                    "must be at least 0, got -1"),
    "seed": (["baseline", "--seed", "-1"], 2, "--seed must be at least 0, got -1"),
    "margin grid": (["select-margin", "--margins", "0.1", "-0.2"], 2,
                    "--margins must be greater than 0, got -0.2"),
    # what needs more than one field
    "views in finetune mode": (["train", "--mode", "finetune", "--views", "4"], 2,
                               "--views 4 caches augmented views for frozen training; --mode "
                               "finetune augments images online: drop --views"),
    "margin of loss and miner": (["train", "--margin", "-1"], 2, "--margin must be greater than 0 "
                                 "for the facenet loss and the semi-hard miner, got -1"),
    "margin of the miner": (["train", "--loss", "hoffer", "--margin", "0"], 2,
                            "--margin must be greater than 0 for the semi-hard miner, got 0"),
    "loss and miner": (["train", "--loss", "facenet", "--miner", "all-pairs"], 2,
                       "miner 'all-pairs' yields pairs; the facenet loss trains on triplets"),
    "study loss": (["loss-study", "--losses", "facenet", "arcface+semi-hard"], 2,
                   "unknown loss 'arcface'; known: contrastive"),
    "study loss and miner": (["loss-study", "--losses", "facenet+hard-pairs"], 2,
                             "miner 'hard-pairs' yields pairs; the facenet loss"),
    "margin to select": (["select-margin", "--loss", "hoffer"], 2,
                         "loss 'hoffer' has no margin to select"),
    "miner study without a miner": (["miner-study", "--loss", "softmax"], 2,
                                    "the softmax loss uses no miner"),
    "regulariser": (["train", "--regularizers", "sparsity=1"], 2,
                    "unknown regulariser 'sparsity'"),
    "schedule": (["train", "--schedules", "margin=wobble:1"], 2, "bad schedule 'margin=wobble:1'"),
    "schedule study bits": (["schedule-study", "--bits", "16", "32"], 2, "one code length"),
    # protocols the data cannot serve: refused once the data is open, before the cache
    "protocol lists without parts": (["baseline", "--protocol", "lists"], 2,
                                     "protocol 'lists' uses the data's own train/query/database "
                                     "parts (list files, a CSV split column) and this data has "
                                     "none; use --protocol auto (or holdout, cifar10)"),
    "protocol holds out too many": (["train", "--protocol", "unseen:2"], 2,
                                    "protocol 'unseen:2' holds out more classes than the data's "
                                    "3 allow (at least two are left to train on); use unseen:N "
                                    "with N from 1 to 1"),
    "protocol too large for the data": (["hash", "--protocol", "nus-wide-21"], 2,
                                        "class 'class0' has 11 image(s); protocol 'nus-wide-21' "
                                        "needs at least 600 per class (100 queries + 500 "
                                        "training); use --protocol holdout"),
    "data dir is a file": (["baseline", "--data-dir", "{file}"], 2, "is a file; pass the folder"),
    "data dir missing": (["train", "--data-dir", "{missing}"], 2, "does not exist"),
    "weights file missing": (["baseline", "--weights", "{missing}"], 2, "no such file"),
    "out is a file": (["train", "--out", "{file}"], 2, "--out"),
    "device": (["baseline", "--device", "cuda:0"], 2, "no CUDA GPU is visible"),
    "checkpoint missing": (["index", "--checkpoint", "{missing}"], 2, "no such file"),
    "query image missing": (["search", "{missing}"], 2, "no such file"),
    # serve: the address, the token and the limits, before the index is read
    "serve host": (["serve", "--host", "999.1.1.1"], 2, "cannot serve on --host 999.1.1.1"),
    "serve token": (["serve", "--token", "secret"], 2,
                    "--token (or DEEPHASH_TOKEN) must be 16 to 256 characters"),
    "serve token reads": (["serve", "--token-reads"], 2, "--token-reads needs a token"),
    "serve allowed host": (["serve", "--allowed-host", "a b"], 2,
                           "--allowed-host 'a b' is not a host name"),
    "serve pixels in flight": (["serve", "--max-pixels-in-flight", "1000"], 2,
                               "--max-pixels-in-flight 1,000 is less than --max-pixels"),
    # a config file fails the same way as the flags
    "yaml range": (["train", "--config", "{yaml}"], 2,
                   "--epochs (training.epochs) must be at least 1, got 0"),
    "yaml name": (["train", "--config", "{yaml}"], 2,
                  "--loss (training.loss): unknown loss 'arcface'; known: contrastive"),
    "yaml syntax": (["baseline", "--config", "{yaml}"], 2, "is not valid YAML"),
    "yaml not a mapping": (["baseline", "--config", "{yaml}"], 2, "must hold a mapping"),
    "yaml missing": (["baseline", "--config", "{missing}"], 2, "cannot read config file"),
    # issue 20: NaN and infinity, repeated list values, absurd sizes, YAML types, studies
    "margin nan": (["train", "--margin", "nan"], 2,
                   "--margin (training.margin) must be a finite number, got nan"),
    "lr inf": (["train", "--lr", "inf"], 2, "--lr (training.lr) must be a finite number, got inf"),
    "margin grid inf": (["select-margin", "--margins", "0.1", "inf"], 2,
                        "--margins must be a finite number, got inf"),
    "regulariser nan": (["train", "--regularizers", "quantization=nan"], 2,
                        "bad regulariser 'quantization=nan': its weight must be a finite number "
                        ">= 0"),
    "regulariser negative": (["hash", "--regularizers", "quantization=-1"], 2,
                             "bad regulariser 'quantization=-1': its weight must be a finite"),
    "regulariser twice": (["train", "--regularizers", "quantization=0.1", "quantization=0.2"], 2,
                          "--regularizers names 'quantization' twice"),
    "loss option unknown": (["hash", "--method", "csq", "--loss-options", "lamda=0.1"], 2,
                            "--loss-options lamda=0.1: the csq loss has no option 'lamda'; its "
                            "options: lambda=0.0001 (>= 0)"),
    "loss option out of range": (["hash", "--method", "orthohash", "--loss-options", "m=3"], 2,
                                 "--loss-options m=3: m must be a number in [0, 2] (default "
                                 "0.2)"),
    "loss option not whole": (["hash", "--method", "hashnet", "--loss-options", "step=0.5"], 2,
                              "step must be a whole number >= 1 (default 200)"),
    "loss option nan": (["hash", "--method", "dpsh", "--loss-options", "eta=nan"], 2,
                        "--loss-options eta=nan: eta must be a number >= 0 (default 10)"),
    "loss option malformed": (["hash", "--method", "dsh", "--loss-options", "alpha"], 2,
                              "--loss-options alpha: give NAME=VALUE, e.g. lambda=0.001"),
    "loss without options": (["train", "--loss-options", "alpha=1"], 2,
                             "--loss-options alpha=1: the facenet loss takes no options; drop "
                             "--loss-options"),
    "loss option in a config file": (["hash", "--config", "{yaml}"], 2,
                                     "--loss-options lambda=-1: lambda must be a number >= 0"),
    "csq without tanh codes": (["train", "--loss", "csq"], 2,
                               "the csq loss trains tanh codes, not none; use --activation tanh "
                               "(deephash hash --method csq sets it)"),
    "schedule nan": (["train", "--schedules", "margin=linear:0.1:nan"], 2,
                     "START, END and EVERY must be finite numbers >= 0"),
    "schedule twice": (["train", "--schedules", "margin=linear:0.1:1", "margin=step:1:2"], 2,
                       "--schedules schedules 'margin' twice"),
    "bits repeated": (["hash", "--bits", "16", "16"], 2,
                      "--bits (hashing.bits) lists 16 more than once; give each value once"),
    "knn k repeated": (["baseline", "--knn-k", "5", "1", "5"], 2,
                       "--knn-k (evaluation.knn_k) lists 5 more than once"),
    "losses repeated": (["loss-study", "--losses", "facenet", "facenet"], 2,
                        "--losses lists 'facenet' more than once"),
    "image size absurd": (["baseline", "--image-size", "100000"], 2,
                          "--image-size (backbone.image_size) must be at most 4096, got 100000"),
    "seed absurd": (["baseline", "--seed", str(2**64)], 2,
                    f"--seed must be at most 4294967295, got {2**64}"),
    "embedding dim absurd": (["train", "--embedding-dim", str(10**7)], 2,
                             "--embedding-dim (training.embedding_dim) must be at most 16384"),
    "batch absurd": (["train", "--batch-samples", "1000000"], 2,
                     "a training batch of --batch-classes 10 x --batch-samples 1000000 = "
                     "10000000 images (its distance matrix) needs at least"),
    "extraction batch absurd": (["baseline", "--batch-size", "1000000", "--image-size", "4096"], 2,
                                "one extraction batch of --batch-size 1000000 images at "
                                "--image-size 4096 needs at least"),
    "yaml nan": (["train", "--config", "{yaml}"], 2,
                 "--margin (training.margin) must be a finite number, got nan"),
    "yaml fraction for an int": (["train", "--config", "{yaml}"], 2,
                                 "config field training.epochs must be a whole number, got 1.5"),
    "yaml bool for an int": (["train", "--config", "{yaml}"], 2,
                             "config field training.epochs must be a whole number, got True"),
    "yaml repeated": (["hash", "--config", "{yaml}"], 2,
                      "--bits (hashing.bits) lists 16 more than once"),
    "study unknown key": (["study", "--file", "{yaml}"], 2,
                          "unknown key(s) stagse; known: title, base, stages"),
    "report out is a file": (["report", "--out", "{file}"], 2,
                             "is a file; choose a folder for the report"),
    "report seed absurd": (["report", "--seed", "-1"], 2, "--seed must be at least 0, got -1"),
    # issue 21: list files and CSV files, each bad line named by file and line number
    "format": (["baseline", "--format", "parquet"], 2,
               "argument --format/--dataset: invalid choice: 'parquet'"),
    "list line width": (["baseline", "--data-dir", "{bad}/lists"], 2,
                        "train.txt line 2: 1 label values, not 2 as on the first line"),
    "list label value": (["train", "--data-dir", "{bad}/lists"], 2,
                         "test.txt line 1: label value '2' is not 0 or 1"),
    "list path missing": (["baseline", "--data-dir", "{bad}/lists"], 2,
                          "database.txt line 2: no image gone.png under"),
    "list path escapes": (["baseline", "--data-dir", "{bad}/lists"], 2,
                          "train.txt line 1: image path '../0.png' leaves"),
    "list empty label set": (["hash", "--data-dir", "{bad}/lists"], 2,
                             "test.txt line 1: 1.png has no label; every image of the query "
                             "split needs at least one"),
    "list conflicting labels": (["baseline", "--data-dir", "{bad}/lists"], 2,
                                "database.txt line 1: 0.png has other labels than on"),
    "list image root": (["baseline", "--data-dir", "{bad}/lists", "--image-root", "{missing}"],
                        2, "--image-root"),
    "csv without path": (["baseline", "--data-dir", "{bad}/data.csv"], 2,
                         "data.csv line 1: no 'path' column"),
    "csv row width": (["train", "--data-dir", "{bad}/data.csv"], 2,
                      "data.csv line 3: 3 fields, the header has 2"),
    "csv given a folder": (["baseline", "--data-dir", "{bad}", "--format", "csv"], 2,
                           "--format csv reads a CSV file"),
    # unlabelled images: index, search and serve take them, training refuses them
    "unlabelled data to train": (["train", "--data-dir", "{bad}", "--format", "unlabelled"], 2,
                                 "bad (unlabelled folder) has no labels: train, baseline and "
                                 "hash need labelled images"),
    "unlabelled data to baseline": (["baseline", "--data-dir", "{bad}"], 2,
                                    "bad (unlabelled folder) has no labels"),
    "unlabelled data to hash": (["hash", "--data-dir", "{bad}"], 2,
                                "bad (unlabelled folder) has no labels"),
    "a csv without labels to train": (["train", "--data-dir", "{bad}/data.csv"], 2,
                                      "has no labels: train, baseline and hash need labelled"),
    "index given a bad format": (["index", "--format", "parquet"], 2,
                                 "argument --format: invalid choice: 'parquet'"),
    "index image root": (["index", "--image-root", "{missing}"], 2,
                         "--image-root"),
    "index data is a text file": (["index", "--data-dir", "{file}"], 2,
                                  "is not a folder; pass the images' folder (or a .csv file"),
}

#: the bad data of a case: ``{file: text}`` written under ``{bad}`` beside images 0-2.png
BAD_DATA: dict[str, dict[str, str]] = {
    "list line width": {"lists/train.txt": "0.png 1 0\n1.png 1\n"},
    "list label value": {"lists/test.txt": "1.png 2 0\n"},
    "list path missing": {"lists/database.txt": "0.png 1 0\ngone.png 0 1\n"},
    "list path escapes": {"lists/train.txt": "../0.png 1 0\n"},
    "list empty label set": {"lists/test.txt": "1.png 0 0\n"},
    "list conflicting labels": {"lists/database.txt": "0.png 0 1\n"},
    "csv without path": {"data.csv": "file,label\n0.png,a\n"},
    "csv row width": {"data.csv": "path,label\n0.png,a\n1.png,b,c\n"},
    "a csv without labels to train": {"data.csv": "path\n0.png\n1.png\n"},
}
#: valid list files the cases change one file of
GOOD_LISTS = {"lists/train.txt": "0.png 1 0\n", "lists/test.txt": "1.png 0 1\n",
              "lists/database.txt": "0.png 1 0\n2.png 0 1\n"}

YAML = {"yaml range": "training:\n  epochs: 0\n", "yaml name": "training:\n  loss: arcface\n",
        "yaml syntax": "seed: [1\n", "yaml not a mapping": "- 1\n- 2\n",
        "yaml nan": "training:\n  margin: .nan\n",
        "yaml fraction for an int": "training:\n  epochs: 1.5\n",
        "yaml bool for an int": "training:\n  epochs: true\n",
        "yaml repeated": "hashing:\n  bits: [16, 32, 16]\n",
        "study unknown key": "stages:\n  - {name: a, command: train}\nstagse: []\n",
        "protocol in a config file": "data:\n  protocol: unseen:-1\n",
        "loss option in a config file": ("training:\n  loss: csq\n  activation: tanh\n"
                                         "  loss_options: [lambda=-1]\n")}


def base_argv(command: str, folder: Path, tmp: Path) -> list[str]:
    """A valid command line of ``command`` (files it needs are created here)."""
    out, cache = str(tmp / "out"), str(tmp / "cache")
    if command == "index":
        checkpoint = tmp / "best.pt"
        checkpoint.write_bytes(b"")
        return ["index", "--checkpoint", str(checkpoint), "--data-dir", str(folder),
                "--out", out, "--cache-dir", cache, "--device", "cpu"]
    if command == "search":
        (tmp / "index").mkdir(exist_ok=True)
        (tmp / "index" / "index.json").write_text("{}")
        return ["search", str(next(folder.glob("test/*/*.png"))), "--index", str(tmp / "index"),
                "--show", str(tmp / "out" / "results.png")]
    if command == "pack":
        return ["pack", str(folder), str(tmp / "out" / "data.pack")]
    if command == "serve":
        return ["serve", "--index", str(tmp / "index")]
    if command == "report":
        return ["report", str(folder), "--out", out]
    if command in COMMANDS:
        return [command, "--data-dir", str(folder), "--out", out, "--cache-dir", cache,
                "--device", "cpu"]
    return [command]


def placeholders(case: str, tmp: Path, folder: Path) -> dict[str, str]:
    (tmp / "a-file.txt").write_text("not a folder")
    (tmp / "config.yaml").write_text(YAML.get(case, ""))
    (tmp / "a-run").mkdir()
    (tmp / "a-run" / "run.json").write_text('{"deephash": "0.1", "state": "finished"}')
    (tmp / "an-index" / "added").mkdir(parents=True)  # an index with an image added to it
    (tmp / "an-index" / "index.json").write_text('{"codes": true, "checkpoint": "best.pt"}')
    (tmp / "an-index" / "added" / "48.png").write_bytes(b"")
    bad = tmp / "bad"
    for name in ("lists/0.png", "lists/1.png", "lists/2.png", "0.png", "1.png"):
        (bad / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(next(folder.glob("train/*/*.png")), bad / name)
    for name, text in {**GOOD_LISTS, **BAD_DATA.get(case, {})}.items():
        (bad / name).write_text(text)
    return {"data": str(folder), "file": str(tmp / "a-file.txt"),
            "missing": str(tmp / "no-such-thing"), "yaml": str(tmp / "config.yaml"),
            "run": str(tmp / "a-run"), "index": str(tmp / "an-index"), "bad": str(bad)}


def command_line(args: list[str], folder: Path, tmp: Path) -> list[str]:
    """The valid command line of ``args[0]`` with ``args[1:]`` appended; a positional
    argument (search's query image) replaces the valid one."""
    argv = base_argv(args[0], folder, tmp)
    extra = args[1:]
    if args[0] == "search" and extra and not extra[0].startswith("-"):
        argv[1] = extra.pop(0)
    return argv + extra


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's errors
        return int(exc.code or 0)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_before_any_work(case: str, image_folder: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv, code, fragment = CASES[case]
    values = placeholders(case, tmp_path, image_folder)
    args = [arg.format(**values) for arg in argv]
    assert run_cli(command_line(args, image_folder, tmp_path)) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("command", [*COMMANDS, "list"])
def test_the_base_command_lines_are_valid(command: str, image_folder: Path,
                                          tmp_path: Path) -> None:
    """Without the bad option each command line passes validation: the cases above fail for
    their own option only."""
    argv = base_argv(command, image_folder, tmp_path)
    args = build_parser().parse_args(argv)
    if command in COMMANDS:
        build_config(command, args)
    assert not (tmp_path / "out").exists()


def _bounded_fields() -> list[tuple[str, str, Any, str]]:
    """(command, flag, out-of-range value, expected bound) for every bounded field."""
    cases = []
    for command, spec in COMMANDS.items():
        for _path, _tp, f in _leaves(spec.config):
            for key, word, delta in (("min", "at least", -1), ("max", "at most", 1),
                                     ("above", "greater than", 0), ("below", "less than", 0)):
                if key in f.metadata:
                    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
                    cases.append((command, flag, f.metadata[key] + delta,
                                  f"must be {word} {f.metadata[key]}"))
    return cases


@pytest.mark.parametrize("command, flag, value, bound", _bounded_fields())
def test_every_declared_bound_is_enforced_by_the_cli(command: str, flag: str, value: Any,
                                                     bound: str, image_folder: Path,
                                                     tmp_path: Path) -> None:
    argv = [*base_argv(command, image_folder, tmp_path), flag, str(value)]
    with pytest.raises(ConfigError, match=f"^{flag}.*{bound}"):
        build_config(command, build_parser().parse_args(argv))


def test_bounds_cover_the_options_the_issue_names() -> None:
    flags = {(command, flag) for command, flag, _v, _b in _bounded_fields()}
    for flag in ("--image-size", "--epochs", "--batch-size", "--knn-k", "--num-workers",
                 "--seed"):
        assert ("train", flag) in flags, flag
    assert ("hash", "--bits") in flags and ("search", "-k") in flags


@pytest.mark.parametrize("run", ["baseline", "train", "select-margin", "loss-study",
                                 "miner-study", "hash", "schedule-study"])
def test_library_entry_points_validate_before_writing(run: str, image_folder: Path,
                                                      tmp_path: Path) -> None:
    """Library users get the same checks: a bad config raises before ``out`` exists."""
    import importlib

    spec = COMMANDS[run]
    config = spec.config(out=str(tmp_path / "out"))
    config.data.data_dir = str(image_folder)
    config.extraction.cache_dir = str(tmp_path / "cache")
    config.extraction.num_workers = -1
    module, _, function = spec.function.partition(":")
    with pytest.raises(ConfigError, match="num_workers"):
        getattr(importlib.import_module(module), function)(config)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_check_fields_reads_nested_tuples_and_names_the_yaml_field() -> None:
    config = TrainConfig()
    check_fields(config)  # the defaults are valid
    bad = dataclasses.replace(config, training=dataclasses.replace(config.training,
                                                                   hidden_dims=(64, 0)))
    with pytest.raises(ConfigError, match=r"^--hidden-dims \(training.hidden_dims\) must be at "
                                          r"least 1, got 0$"):
        check_fields(bad)
    with pytest.raises(ConfigError, match="unknown protocol 'x'"):
        check_fields(dataclasses.replace(BaselineConfig(), data=dataclasses.replace(
            BaselineConfig().data, protocol="x")))


def test_every_choice_is_listed_in_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = re.sub(r"\s+", "", sub.choices["train"].format_help())
    listed = 0
    for _path, _tp, f in _leaves(TrainConfig):
        if "choices" in f.metadata:
            assert "{" + ",".join(f.metadata["choices"]) + "}" in text, f.name
            listed += 1
    assert listed >= 9  # dataset, protocol, backbone, distance, loss, miner, ...
