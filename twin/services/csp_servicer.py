"""CspService: each CSP region's network (hubs per technology, schedule, base stations, load with
each link's capacity and each class's service levels, coverage for one hub), as resources
regions/north, regions/central, regions/south."""

from __future__ import annotations

import asyncio

from twin.engine.interface import FleetEngine
from twin.generated.csp.v1 import csp_pb2, csp_pb2_grpc
from twin.model.catalog import AREAS, CSP_OPERATOR, WAN_LABEL, Csp, MessageType, WanTech, region_by_name
from twin.model.network import NEVER
from twin.services.convert import alert_figures, class_figures, hub_index, link_messages, ts
from twin.services.errors import invalid, not_found
from twin.services.pagination import next_page_token, page_of, slice_page

AREA_ID_BY_NAME = {a.name: a.id for a in AREAS}


def _region(name: str, field: str = "name") -> Csp:
    try:
        return region_by_name(name.strip().removeprefix("regions/"))
    except ValueError:
        raise not_found(field, f"no region {name!r}; regions are regions/north, regions/central, regions/south") from None


class CspServicer(csp_pb2_grpc.CspServiceServicer):
    def __init__(self, supervisor: FleetEngine):
        self.sup = supervisor
        self._cells: tuple[int, dict[int, tuple[int, int]]] | None = None  # (tick, base stations)

    async def GetNetworkState(self, request, context):
        region = _region(request.name)
        i = int(region)
        plan = self.sup.network_view()
        tick = self.sup.tick
        up = plan.up(tick)
        last = self.sup.history[-1] if self.sup.history else None
        techs = []
        for w in WanTech:
            off = plan.off_since(region, w, tick)
            t = csp_pb2.TechnologyState(technology=WAN_LABEL[w], up=bool(up[region, w]),
                                        hubs=int(last.hubs_by_wan[i, w]) if last else 0)
            if off != NEVER:
                t.off_from.CopyFrom(ts(self.sup.config.time_of(off)))
            techs.append(t)
        return csp_pb2.NetworkState(name=f"regions/{region.name.lower()}", operator=CSP_OPERATOR[Csp(i)],
                                    technologies=techs, tick=tick,
                                    reachable_hubs=int(last.reachable_hubs[i]) if last else 0,
                                    dark_hubs=int(last.dark_hubs[i]) if last else 0)

    async def ListSwitchOffs(self, request, context):
        region = _region(request.parent, "parent")
        plan = self.sup.network_view()
        page = page_of(request, default_size=50, max_size=1000)
        out = []
        # Every window, switch-offs and incidents alike; overlapping ones are listed each.
        for w, off, on in plan.windows_of(region):
            so = csp_pb2.SwitchOff(technology=WAN_LABEL[WanTech(w)], off_from=ts(self.sup.config.time_of(off)))
            if on != NEVER:
                so.on_from.CopyFrom(ts(self.sup.config.time_of(on)))
            out.append(so)
        switch_offs, nxt = slice_page(request, out, page)
        return csp_pb2.ListSwitchOffsResponse(switch_offs=switch_offs, next_page_token=nxt)

    async def ListBaseStations(self, request, context):
        region = _region(request.parent, "parent")
        if region != Csp.NORTH:
            raise invalid("parent", "base stations belong to the North's long-range radio network (regions/north)")
        asked = page_of(request, default_size=100, max_size=2000)
        cells = await self._base_stations()
        ids = sorted(cells)
        page = [i for i in ids if i >= asked.offset][:asked.size]
        nxt = next_page_token(request, page[-1] + 1 if page and page[-1] != ids[-1] else None)
        return csp_pb2.ListBaseStationsResponse(
            base_stations=[csp_pb2.BaseStation(name=f"regions/north/baseStations/{i}", id=i, hubs=cells[i][0],
                                               area_id=cells[i][1]) for i in page], next_page_token=nxt)

    async def _base_stations(self) -> dict[int, tuple[int, int]]:
        """{cell: (LRR hubs, area id)} as of the current tick: one fleet aggregate per tick however
        many pages are read (hubs move cell only through events, which take effect at ticks)."""
        tick = self.sup.tick
        if self._cells is not None and self._cells[0] == tick:
            return self._cells[1]
        rows = await asyncio.to_thread(self.sup.aggregate, ["cell", "area", "wan"])
        cells: dict[int, tuple[int, int]] = {}
        for r in rows:
            if r["wan"] == WAN_LABEL[WanTech.LRR]:
                hubs, _ = cells.get(int(r["cell"]), (0, 0))
                cells[int(r["cell"])] = (hubs + r["hubs"], AREA_ID_BY_NAME.get(r["area"], 0))
        self._cells = (tick, cells)
        return cells

    async def GetLoad(self, request, context):
        region = _region(request.name)
        if request.ticks < 0:
            raise invalid("ticks", "must not be negative")
        n = min(request.ticks or 48, 2000)
        recent = list(self.sup.history)[-n:]
        i = int(region)
        cap = self.sup.config.params.capacity
        ticks = []
        for s in recent:
            load = csp_pb2.TickLoad(tick=s.tick, messages={m.name: int(s.messages[i, m]) for m in MessageType},
                                    peak_alerts_per_s=s.peak_alerts_per_s)
            r = s.capacity  # the capacity model's report (twin.model.capacity), None when it is off
            if r is not None:
                load.links.extend(csp_pb2.LinkLoad(technology=t, capacity_per_s=c, utilisation=u, backlog=b)
                                  for _, t, c, u, b in link_messages(r, i))
                load.classes.extend(csp_pb2.ClassLoad(**f) for f in class_figures(r, cap, i))
                load.alerts.CopyFrom(csp_pb2.AlertLoad(**alert_figures(r, i)))
                if region == Csp.NORTH:
                    load.base_stations.CopyFrom(csp_pb2.BaseStationLoad(
                        peak_utilisation=float(r.bs_peak_utilisation), congested=int(r.bs_congested),
                        backlog=int(r.bs_backlog)))
            ticks.append(load)
        return csp_pb2.Load(name=f"regions/{region.name.lower()}", ticks=ticks)

    async def GetCoverage(self, request, context):
        cfg = self.sup.config
        hub = hub_index(request.hub, cfg.seed, cfg.hubs, field="hub")
        rec = await asyncio.to_thread(self.sup.hub, hub)
        available = "network switched off" not in rec["dark_reasons"] and "no WAN coverage" not in rec["dark_reasons"]
        return csp_pb2.Coverage(hub=f"hubs/{rec['device_id']}", region=f"regions/{rec['region'].lower()}",
                                technology=rec["wan"], available=available, mesh=rec["mesh"],
                                vwan_eligible=rec["vwan_eligible"])
