"""Shared fixtures. End-to-end tests start real daemons (processes) on loopback with port 0."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root for cgroups")
        for item in items:
            if "cgroups" in item.keywords:
                item.add_marker(skip)
