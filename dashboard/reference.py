"""The API's reference data as the dashboard uses it: the choices its forms offer and the order in
which it draws firmware versions. Built from GetFleetCatalog (fetched by the feed), so the
dashboard names nothing the API does not, and needs nothing from the model to do it."""

from __future__ import annotations

from dataclasses import dataclass, field

from twin.generated.fleet.v1 import fleet_pb2

# SupplierSwitch.fuel: the three values the API documents for the field.
FUELS = ("electricity", "gas", "dual")


@dataclass(frozen=True)
class Reference:
    """Names by kind, in the API's order. `versions` maps (device type, model label) to that
    model's firmware versions in version order, oldest first."""

    regions: tuple[str, ...] = ()
    areas: tuple[tuple[int, str], ...] = ()  # (id, name)
    suppliers: tuple[str, ...] = ()
    switchable: tuple[str, ...] = ()  # WAN technologies an operator can switch off
    devices: tuple[str, ...] = ()
    manufacturers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    versions: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, c: fleet_pb2.FleetCatalog) -> Reference:
        models = [(d.name, m) for d in c.device_types for m in d.models]
        return cls(
            regions=tuple(r.name for r in c.csp_regions),
            areas=tuple((a.id, a.name) for a in c.areas),
            suppliers=tuple(s.name for s in c.suppliers),
            switchable=tuple(w.label for w in c.wan_technologies if w.switchable),
            devices=tuple(d.name for d in c.device_types),
            manufacturers=tuple(sorted({m.manufacturer for _, m in models})),
            models=tuple(sorted({m.model for _, m in models})),
            versions={(d, m.label): tuple(m.firmware_versions) for d, m in models})

    def choices(self) -> dict[str, tuple[str, ...]]:
        """Form field name -> the values offered where the API takes a name from a fixed
        vocabulary (empty before the catalog has been fetched: the fields are then plain text,
        and the server still checks them)."""
        if not self.regions:
            return {}
        areas = tuple(str(i) for i, _ in self.areas)
        return {"region": self.regions, "regions": self.regions, "technology": self.switchable,
                "prioritise": ("", *self.switchable), "device": self.devices, "manufacturer": self.manufacturers,
                "model": self.models, "fuel": FUELS, "area": areas, "areas": areas, "supplier": self.suppliers,
                "suppliers": self.suppliers, "solr": self.suppliers, "to_supplier": self.suppliers}

    def area_labels(self) -> dict[str, str]:
        """Area choice -> what the dropdown shows: '12 London'."""
        return {str(i): f"{i} {name}" for i, name in self.areas}

    def version_order(self, device: str, label: str) -> tuple[str, int, str]:
        """Where an AggregateFleet firmware label ('Honeywell AS302P 1.14') sits: by model, then in
        the version order the API gives (1.9 before 1.12, never as text); a version the catalog
        does not list yet goes after its model's known ones; a label of no known model sorts by its
        text among the models."""
        models = sorted((m for d, m in self.versions if d == device), key=len, reverse=True)
        for m in models:
            if label.startswith(m + " "):
                version = label[len(m) + 1:]
                known = self.versions[(device, m)]
                return (m, known.index(version), "") if version in known else (m, len(known), version)
        return (label, 0, "")

    def knows_version(self, device: str, label: str) -> bool:
        """Whether `label` is 'model version' of a version the catalog lists (if not, a rollout
        introduced it after the catalog was fetched)."""
        return any(label == f"{m} {v}" for (d, m), vs in self.versions.items() if d == device for v in vs)
