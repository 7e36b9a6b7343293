"""The fleet's reference data as the API serves it (GetFleetCatalog): every name a client may send
or will read, built from the model's catalogue, so no client needs the model to label or validate
anything. Small (a few kB) and the same for every caller."""

from __future__ import annotations

from twin.generated.fleet.v1 import fleet_pb2
from twin.model.catalog import (
    AREAS,
    CSP_OPERATOR,
    REGIONS,
    SUPPLIERS,
    WAN_LABEL,
    AlertKind,
    Csp,
    DeviceType,
    VersionTable,
    WanTech,
    models_of,
)
from twin.services.convert import ALERT_CODES, region_name

# What NetworkSwitchOff.technology accepts (the model's switch-off parser takes 2G and 3G only).
SWITCHABLE = (WanTech.G2, WanTech.G3)


def fleet_catalog(versions: VersionTable) -> fleet_pb2.FleetCatalog:
    """The catalog message. `versions` is the run's firmware version table, so versions that a
    rollout introduced are listed with the catalogue's, each model's in version order."""
    regions = [fleet_pb2.CatalogCspRegion(name=r.name.title(), operator=CSP_OPERATOR[Csp[r.name]],
                                          area_ids=[a.id for a in AREAS if a.region == r]) for r in REGIONS]
    areas = [fleet_pb2.CatalogArea(id=a.id, name=a.name, short_code=a.short_code, dno=a.dno,
                                   csp_region=region_name(a.region)) for a in AREAS]
    wans = [fleet_pb2.CatalogWanTechnology(label=WAN_LABEL[w], switchable=w in SWITCHABLE) for w in WanTech]
    devices = []
    for dt in DeviceType:
        models = []
        for code, m in enumerate(models_of(dt), start=1):
            ordered = sorted(versions.versions(dt, code), key=versions.scheme(dt, code).sort_key)
            models.append(fleet_pb2.CatalogDeviceModel(manufacturer=m.manufacturer, model=m.model, label=m.label,
                                                       smets=m.smets, firmware_versions=ordered))
        devices.append(fleet_pb2.CatalogDeviceType(name=dt.name, models=models))
    return fleet_pb2.FleetCatalog(
        csp_regions=regions, areas=areas, wan_technologies=wans,
        suppliers=[fleet_pb2.CatalogSupplier(name=s.name, market_share=s.market_share, prepay_share=s.prepay_share)
                   for s in SUPPLIERS],
        device_types=devices, alert_kinds=[fleet_pb2.CatalogAlertKind(name=k.name, code=ALERT_CODES[k])
                                           for k in AlertKind])
