from hypothesis import settings
from tests.unit.test_allocator import AllocatorMachine
T = AllocatorMachine.TestCase
T.settings = settings(max_examples=1500, stateful_step_count=80, deadline=None)
