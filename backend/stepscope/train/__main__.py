import sys

from stepscope.train.cli import main

sys.exit(main())
