import sys

from devtools.chaos.runner import main

sys.exit(main())
