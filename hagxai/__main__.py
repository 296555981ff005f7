import sys

from hagxai.cli import main

sys.exit(main())
