"""Nodes: what runs on a machine (a multi-core CPU with a run queue)."""

from commsim.nodes.cpu import Cpu

__all__ = ["Cpu"]
