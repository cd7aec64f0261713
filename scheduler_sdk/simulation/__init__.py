"""Simulated agents (`aiomesos simulate-agents`): the pure model of one agent is `model`; the shell that attaches
them to a master over the real protocol is `scheduler_sdk.simulated_agents`."""
