import sys

from commsim.cli import main

sys.exit(main())
