"""The DCC's logic, shared by every front door (the gRPC DccService; the DUIS gateway): Service
Request checking and routing, deferred responses, quarantine, alert fan-out. Plain dataclasses
in, plain dataclasses or DccError out; no gRPC, no generated code."""

from twin.services.dcc.alerts import ALERT_CODES, AlertFeed, DeviceAlert, alert_kinds, alert_mask
from twin.services.dcc.core import Checked, DccCore, DccEngine
from twin.services.dcc.errors import Code, DccError, PositionAhead, PositionExpired, StreamBehind
from twin.services.dcc.requests import ResponseStatus, ServiceRequest, ServiceResponse

__all__ = ["ALERT_CODES", "AlertFeed", "Checked", "Code", "DccCore", "DccEngine", "DccError", "DeviceAlert",
           "PositionAhead", "PositionExpired", "ResponseStatus", "ServiceRequest", "ServiceResponse", "StreamBehind",
           "alert_kinds", "alert_mask"]
