"""Experiment configuration: the schema of every key, and loading/resolving YAML."""

from commsim.config.load import Experiment, RunSpec, dump_yaml, load, resolve_run
from commsim.config.schema import SECTIONS, TOP_LEVEL, Field, Section, register_section

__all__ = ["Experiment", "RunSpec", "load", "resolve_run", "dump_yaml",
           "Field", "Section", "SECTIONS", "TOP_LEVEL", "register_section"]
