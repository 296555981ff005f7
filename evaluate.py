"""``python evaluate.py --config FILE [key=value ...]``: the same as ``hagxai evaluate``."""

import sys

from hagxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
