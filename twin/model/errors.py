"""The model's input error, at the bottom of the model so every module (config, timeutil, the
grammar of filters and commands) can raise it without importing each other."""

from __future__ import annotations


class TwinInputError(ValueError):
    """Bad input from a user: the message names the offending field and is safe to show."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.reason = message
