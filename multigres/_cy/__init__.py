"""Compiled extensions, built from pyx/ by setup.py."""
