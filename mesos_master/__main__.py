import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # before grpc is imported: see scheduler_sdk/cli/__init__.py

from mesos_master.daemon import main

main()
