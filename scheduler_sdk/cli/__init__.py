"""The `aiomesos` command line.

gRPC's C core prints its own multi-line diagnostics to stderr (a failed bind, an unresolvable address) on top of
our one readable error line; the command line and the daemons it starts keep it quiet unless the user asks for
them with GRPC_VERBOSITY. This must happen before grpc is first imported, hence here.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
