"""``python train.py --config FILE [key=value ...]``: the same as ``hagxai train``."""

import sys

from hagxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
