"""Where the autoscaler's hosts come from: providers of the `ClusterProvider` contract (extension.py).

* `CallbackProvider` wraps two functions, which is all a cloud needs. For example, with an auto scaling group
  per host group whose instances start an agent with ``--attributes asg:<group>``::

      async def grow(group: str, count: int) -> list[str]:
          await cloud.set_desired_capacity(group, await cloud.desired_capacity(group) + count)
          return []  # hostnames not known yet: the autoscaler counts `count` hosts starting

      async def shrink(group: str, hostnames: list[str]) -> None:
          for name in hostnames:  # the hosts are idle and disabled already
              await cloud.terminate_instance(await cloud.instance_of(name), decrement_capacity=True)

      autoscaler = Autoscaler(rules, provider=CallbackProvider(up=grow, down=shrink))

  Either function may be a plain function or a coroutine function.
* `ProviderPerGroup` sends each group to its own provider.

(`scheduler_sdk.local_provider.LocalAgentProvider` starts and stops real agent processes of a `LocalCluster` on
this machine; it lives beside the local cluster, which placement does not depend on.) The contract the
`Autoscaler` relies on is `ClusterProvider`'s docstring.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence

from scheduler_sdk.placement.extension import ClusterProvider

__all__ = ["CallbackProvider", "ClusterProvider", "DownCallback", "ProviderPerGroup", "UpCallback"]

UpCallback = Callable[[str, int], "Awaitable[Sequence[str]] | Sequence[str]"]
DownCallback = Callable[[str, list[str]], "Awaitable[None] | None"]


class CallbackProvider:
    """A provider made of two functions, `up(group, count) -> hostnames` and `down(group, hostnames)` (plain or
    async). See the module docstring for a cloud example."""

    def __init__(self, up: UpCallback, down: DownCallback) -> None:
        self.up = up
        self.down = down

    async def scale_up(self, group: str, count: int) -> list[str]:
        result = self.up(group, count)
        if inspect.isawaitable(result):
            result = await result
        return [str(name) for name in (result or [])]

    async def scale_down(self, group: str, hostnames: Sequence[str]) -> None:
        result = self.down(group, list(hostnames))
        if inspect.isawaitable(result):
            await result


class ProviderPerGroup:
    """Routes each group to its provider; a group with none is an error."""

    def __init__(self, providers: Mapping[str, ClusterProvider]) -> None:
        self.providers = dict(providers)

    def _get(self, group: str) -> ClusterProvider:
        try:
            return self.providers[group]
        except KeyError:
            raise ValueError(f"no provider for host group {group!r}") from None

    async def scale_up(self, group: str, count: int) -> list[str]:
        return await self._get(group).scale_up(group, count)

    async def scale_down(self, group: str, hostnames: Sequence[str]) -> None:
        await self._get(group).scale_down(group, hostnames)
