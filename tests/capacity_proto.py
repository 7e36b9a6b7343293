"""A model run's capacity report as the API carries it (twin.fleet.v1 NetworkCapacity), built by
hand from CapacityReport.to_dict(): how the dashboard's capacity tests feed its figures with
numbers from a real model run, whatever the servicer does. No Ray, no gRPC."""

from __future__ import annotations

from twin.generated.fleet.v1 import fleet_pb2
from twin.model.capacity import CapacityReport
from twin.model.catalog import CLASS_LABEL, TrafficClass
from twin.model.params import CapacityParams


def capacity_message(report: CapacityReport, params: CapacityParams) -> fleet_pb2.NetworkCapacity:
    """`report` (one tick) as a NetworkCapacity, with the Target Response Times of `params`."""
    d = report.to_dict()
    msg = fleet_pb2.NetworkCapacity(
        base_station_peak_utilisation=d["base_stations"]["peak_utilisation"],
        base_stations_congested=d["base_stations"]["congested"],
        base_station_backlog=d["base_stations"]["backlog"], dsp_utilisation=d["dsp_utilisation"])
    for name, link in d["links"].items():
        csp, tech = name.split("/")
        msg.links.add(csp=csp.title(), technology=tech, capacity_per_s=link["capacity_per_s"],
                      utilisation=link["utilisation"], backlog=link["backlog"])
    for csp in d["messages"]:
        for k in TrafficClass:
            label = CLASS_LABEL[k]
            msg.classes.add(csp=csp, traffic_class=label, messages=int(d["messages"][csp][label]),
                            latency_p50_s=d["latency_p50_s"][csp][label], latency_p95_s=d["latency_p95_s"][csp][label],
                            latency_p99_s=d["latency_p99_s"][csp][label], within_target=d["within_target"][csp][label],
                            target_response_s=params.target_response_s[k.name], backlog=int(d["backlog"][csp][label]),
                            oldest_age_s=d["oldest_age_s"][csp][label])
    for csp in d["alerts"]["delayed"]:
        msg.alerts.add(csp=csp, **{k: v[csp] for k, v in d["alerts"].items()})
    return msg

