import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # before grpc is imported: see scheduler_sdk/cli/__init__.py

from mesos_agent.daemon import main

main()
