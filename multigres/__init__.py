"""Multigres: a fleet of PostgreSQL servers that looks like one."""

__version__ = "0.1.0"
