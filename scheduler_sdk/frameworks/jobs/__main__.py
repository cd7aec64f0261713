import sys

from scheduler_sdk.frameworks.jobs.daemon import main

sys.exit(main())
