"""Shared fixtures. Unit tests never start Ray; integration tests share one local Ray."""

from __future__ import annotations

from dataclasses import replace

import pytest

from twin.model.config import FleetConfig
from twin.model.params import IncidentParams, ModelParams


def quiet_params(**incident_overrides: float) -> ModelParams:
    """Model parameters with background incidents switched off (or set as given)."""
    ip = replace(IncidentParams(), power_outages_per_year=0.0, hub_faults_per_year=0.0,
                 hardware_failures_per_year=0.0)
    return ModelParams(incidents=replace(ip, **incident_overrides))


@pytest.fixture
def small_config() -> FleetConfig:
    # 20 blocks of 1,024 hubs, the last one partial: enough blocks to split 7 ways.
    return FleetConfig(hubs=20_000, seed=11, block_size=1024)
