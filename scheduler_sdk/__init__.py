"""The aiomesos scheduler SDK: what framework authors and operators import."""

from scheduler_sdk.resources import Resources, ResourcesError

__all__ = ["Resources", "ResourcesError"]
__version__ = "0.1.0"
