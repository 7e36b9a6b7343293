"""Which shard and fleet classes implement each command type."""

from __future__ import annotations

from twin.model.config import FleetConfig
from twin.model.ops.base import FleetOp, ShardOp
from twin.model.ops.commands import Command
from twin.model.ops.mhhs import MhhsFleet, MhhsShard
from twin.model.ops.network_ops import (
    CspIncidentShard,
    FieldProgrammeFleet,
    InstantFleet,
    SwapShard,
    SwitchOffShard,
    TimedFleet,
    VwanShard,
)
from twin.model.ops.outages import BaseStationShard, PowerOutageShard
from twin.model.ops.reads import ReadsFleet, ReadsShard
from twin.model.ops.rollout import RolloutFleet, RolloutShard
from twin.model.ops.service_requests import ServiceRequestFleet, ServiceRequestShard
from twin.model.ops.switching import ChurnFleet, ChurnShard, SolrFleet, SolrShard, SwitchingFleet, SwitchShard

IMPLEMENTATIONS: dict[str, tuple[type[ShardOp], type[FleetOp]]] = {
    "firmware_rollout": (RolloutShard, RolloutFleet),
    "supplier_switch": (SwitchShard, SwitchingFleet),
    "churn_campaign": (ChurnShard, ChurnFleet),
    "supplier_failure": (SolrShard, SolrFleet),
    "network_switch_off": (SwitchOffShard, InstantFleet),
    "swap_programme": (SwapShard, FieldProgrammeFleet),
    "vwan_fallback": (VwanShard, FieldProgrammeFleet),
    "power_outage": (PowerOutageShard, TimedFleet),
    "base_station_failure": (BaseStationShard, TimedFleet),
    "csp_incident": (CspIncidentShard, TimedFleet),
    "service_request": (ServiceRequestShard, ServiceRequestFleet),
    "mhhs_migration": (MhhsShard, MhhsFleet),
    "on_demand_reads": (ReadsShard, ReadsFleet),
}


def make_shard_op(name: str, cmd: Command, seq: int) -> ShardOp:
    return IMPLEMENTATIONS[cmd.kind][0](name, cmd, seq)


def make_fleet_op(name: str, cmd: Command, config: FleetConfig) -> FleetOp:
    return IMPLEMENTATIONS[cmd.kind][1](name, cmd, config)
