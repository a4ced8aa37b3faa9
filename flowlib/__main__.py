import sys

from flowlib.cli import main

sys.exit(main())
