"""How every part of the kit reads its settings: one convention, one place.

The token endpoint, the sample agent and the harness each read their settings once into a typed
object. They read them the same way: every problem is collected and reported together, one line
each, naming the variable (a deployer fixes the whole `.env` in one go, not one restart per
mistake), and a boolean means the same words everywhere.
"""

from kit_settings.env import EnvReader, SettingsError, parse_flag

__all__ = ["EnvReader", "SettingsError", "parse_flag"]
