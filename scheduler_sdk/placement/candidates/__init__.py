"""Candidate sources: which hosts the engine examines for a task, and in what order.

Every source implements `CandidateSource`; the engine (engine.py) walks what it gives through the same chain
(filter -> score -> limit -> pick), so a source only decides the order, and may leave out hosts that cannot win.
Each fast source is property-tested against its reference (tests/unit/scheduler_sdk/placement/).

=====================  ============================================  =====================================
source                 used for                                      reference
=====================  ============================================  =====================================
`RotatingScan`         any calculator (hostname order from the       itself
                       host the last task went to)
`SortedScan`           `BinPacking` / `Spread` with ``fast_path``    itself (score every host, sort)
                       off
`FreeAmountIndex`      `BinPacking(r)` / `Spread(r)`                 `SortedScan`
`ShapeIndex`           a shape-only calculator (`fitness.by_shape`)  `RotatingScan`
                       without ``good_enough``
`GoodEnoughFirst`      the same with ``good_enough``, tasks without  `RotatingScan`
                       soft constraints
=====================  ============================================  =====================================
"""

from scheduler_sdk.placement.candidates.free_index import FreeAmountIndex
from scheduler_sdk.placement.candidates.scan import RotatingScan, SortedScan
from scheduler_sdk.placement.candidates.shape_index import GoodEnoughFirst, ShapeIndex
from scheduler_sdk.placement.candidates.source import Candidate, CandidateSource, FitFn

__all__ = [
    "Candidate",
    "CandidateSource",
    "FitFn",
    "FreeAmountIndex",
    "GoodEnoughFirst",
    "RotatingScan",
    "ShapeIndex",
    "SortedScan",
]
