"""``hagxai cache verify DIR``: check every shard of the evidence caches in ``DIR``.

Opening a cache only checks each shard's size; a shard's SHA-256 is checked when it is first read
(:mod:`hagxai.cache`). This command reads every shard of one cache folder (``DIR/index.json``) or
of every cache folder under ``DIR`` (the ``evidence`` folder of the cache home, say), prints one
line per cache and exits 1 naming the bad shards when there are any.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hagxai.cache import CacheError, EvidenceCache
from hagxai.cache.shards import INDEX_FILE
from hagxai.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("cache", help="check the evidence caches on disk")
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    verify = actions.add_parser(
        "verify", help="check every shard's size and SHA-256 (exit 1 naming bad shards)"
    )
    verify.add_argument("dir", type=Path, metavar="DIR", help="a cache folder or a folder of them")
    return parser


def cache_folders(folder: Path) -> list[Path]:
    """``folder`` when it holds a cache index, else the cache folders found below it, sorted."""
    if (folder / INDEX_FILE).is_file():
        return [folder]
    return sorted(index.parent for index in folder.rglob(INDEX_FILE))


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    folders = cache_folders(folder)
    if not folders:
        raise UserError(f"{folder} holds no evidence cache (no {INDEX_FILE} in it or below)")
    bad_caches = 0
    for path in folders:
        try:
            bad = EvidenceCache.open(path).verify()
        except CacheError as err:
            bad = {INDEX_FILE: str(err)}
        if bad:
            bad_caches += 1
            for name, problem in bad.items():
                print(f"BAD {path / name}: {problem}")
        else:
            print(f"ok  {path}")
    if bad_caches:
        print(f"{bad_caches} of {len(folders)} caches have bad shards")
        return 1
    return 0
