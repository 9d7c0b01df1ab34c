"""farmhand: declare a farm in one TOML file; farmhand runs, heals and balances it."""

__version__ = "0.1.0"
