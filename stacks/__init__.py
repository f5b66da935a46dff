"""Typed stack configuration."""

from stacks.config import ConfigError, StackSettings, load, parse

__all__ = ["ConfigError", "StackSettings", "load", "parse"]
