"""The farm file: TOML in, validated models out, every problem named by file, line and key."""

from farmhand.spec.load import load_farm, parse_farm
from farmhand.spec.models import FarmSpec, HealthSpec, HostSpec, LbSpec, RoleSpec

__all__ = ["FarmSpec", "HealthSpec", "HostSpec", "LbSpec", "RoleSpec", "load_farm", "parse_farm"]
