#!/bin/sh
# A master and N agents on this machine, each in its own network namespace with its own address on a bridge,
# talking over it as real hosts do (docs/multi-host.md). As root:
#
#   deploy/netns-cluster.sh up 3             # bridge amam, hosts master, agent1..agent3 (10.231.X.2, .3, ...)
#   deploy/netns-cluster.sh status           # hosts, addresses, daemons; the AIOMESOS_CONFIG line to export
#   deploy/netns-cluster.sh partition agent2 # drop every packet to and from agent2
#   deploy/netns-cluster.sh heal agent2
#   deploy/netns-cluster.sh add agent4       # one more agent host (remove agent4: take it away again)
#   deploy/netns-cluster.sh down             # stop everything; remove namespaces, bridge and cgroups
#
# Options before the action: --dir DIR (the cluster's work dir, default /tmp/aiomesos-netns). `up` takes
# --name, --subnet, --resources, --master-flags '...', --agent-flags '...'. Needs ip (iproute2), nft
# (nftables), nsenter and unshare (util-linux). The work is done by scheduler_sdk/netns_cluster.py, the code the
# e2e tests use too; PYTHON (default: the checkout's .venv, else python3) runs it.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$here/.venv/bin/python" ]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m scheduler_sdk.netns_cluster "$@"
