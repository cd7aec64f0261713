"""namespaces/pid: the task runs in its own pid and mount namespaces with /proc remounted, so it sees only its
own processes (``unshare --pid --fork --mount-proc --kill-child`` with a tiny init, see ``_wrapper``);
commands run in the container enter them with ``nsenter``.  Needs root and util-linux; never part of
"auto"."""

from __future__ import annotations

import os

from .._names import PID_NS
from .._types import LaunchSpec
from .._wrapper import tool
from ._interface import Isolator, LaunchInfo


class PidNamespace(Isolator):
    name = PID_NS

    def __init__(self, unshare: str, nsenter: str | None) -> None:
        self.unshare = unshare
        self.nsenter = nsenter

    @classmethod
    def on_this_host(cls) -> PidNamespace:
        """The isolator with this host's tools; ValueError where it cannot work (no unshare, not root)."""
        unshare = tool("unshare")
        if unshare is None:
            raise ValueError("isolator namespaces/pid needs unshare(1) (util-linux), which is not installed")
        if os.geteuid() != 0:
            raise ValueError("isolator namespaces/pid needs root (mounting /proc in a new namespace)")
        return cls(unshare, tool("nsenter"))

    def prepare(self, spec: LaunchSpec, launch: LaunchInfo) -> None:
        launch.unshare = self.unshare
