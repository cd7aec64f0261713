"""What the operator sets per role (weights, quota), written to the registry and given to the allocator; and
what each role holds now."""

from __future__ import annotations

from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.allocator.base import Quota
from mesos_master.registry.operations import RemoveQuota, UpdateQuota, UpdateWeight
from mesos_master.state import MasterState
from mesos_master.validation import validate_quota, validate_weights
from mesos_master.views import fill_quota
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal


class RolePolicyTransitions(MasterState):
    def set_weights(self, weights: dict[str, float]) -> None:
        validate_weights(weights)
        self.weights.update(weights)
        self.allocator.update_weights(weights)
        for role, weight in weights.items():
            self.outbox.write(UpdateWeight(role, weight))
        self.outbox.publish(OperatorEvent(type=OperatorEvent.WEIGHTS_UPDATED, time=self.clock(), weights=weights))

    def set_quota(self, role: str, quota: Quota | None) -> None:
        """Set (None: remove) a role's quota; raises CallError for a quota the role tree cannot honour (see
        `validate_quota`: hierarchical quota, as in Mesos)."""
        if quota is not None and not quota.guarantee and quota.limit is None:
            quota = None
        validate_quota(self.quotas, role, quota)
        if quota is None:
            self.quotas.pop(role, None)
            self.outbox.write(RemoveQuota(role))
        else:
            self.quotas[role] = quota
            limit = None if quota.limit is None else tuple(quota.limit.to_proto())
            self.outbox.write(UpdateQuota(role, tuple(quota.guarantee.to_proto()), limit))
        self.allocator.update_quota(role, quota)
        event = OperatorEvent(type=OperatorEvent.QUOTA_UPDATED, time=self.clock())
        fill_quota(event.quota, role, quota)
        self.outbox.publish(event)

    def role_usage(self) -> dict[str, Resources]:
        """What each role holds: its tasks' resources and its outstanding offers."""
        usage: dict[str, Resources] = {}
        for fw in self.frameworks.values():
            for task in fw.tasks.values():
                if not is_terminal(task.state):
                    role = task.role or fw.roles()[0]
                    usage[role] = usage.get(role, Resources.empty()) + task.resources
        for offer in self.offers.values():
            usage[offer.role] = usage.get(offer.role, Resources.empty()) + offer.resources
        return usage
