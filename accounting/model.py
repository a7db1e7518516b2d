"""Wire objects of the accounting kinds (``site``, ``boundary``, ``factors``, ``rating``) and their state records.

Invariants (as for every chain object, see ``node.types``):
- integers only: factor values are integers in millionths of their unit (``value_e6``: 0.6479 tCO2/MWh is
  647_900), K values in millionths, thresholds in thousandths; areas in m², energy in Wh, times in Unix ms;
- tuples that a kind checks for order (boundary devices by handle, factors by key) have exactly one encoding;
- the field order of each class is its wire format.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.types import Handle, Hash32, Height, PublicKey, ShortStr, Text, TimestampMs

CARRIER_ELECTRICITY = "electricity"
CARRIER_HEAT = "heat"
CARRIER_NONE = "none"
CARRIERS = (CARRIER_ELECTRICITY, CARRIER_HEAT, CARRIER_NONE)


@dataclass(frozen=True, slots=True)
class SitePayload:
    """Payload of a ``site`` tx: a building or plant, created (version 1) or changed (version n+1) by the owner."""

    site_id: ShortStr
    """Short lower-case id, unique in the consortium, e.g. ``hohhot-complex``."""
    version: int
    """1 to create; exactly one more than the current version to change (a stale edit is refused)."""
    name: Text
    floor_area_m2: int
    """Heated floor area, m² (the denominator of every per-m² figure)."""
    address: Text
    province: ShortStr
    """Grid province as the factor tables name it, e.g. ``Inner Mongolia``."""
    grid_region: ShortStr
    """Regional grid as the factor tables name it, e.g. ``North China`` (Hohhot is on the Mengxi grid)."""
    season_start: ShortStr
    """First day of the heating season, ``MM-DD`` (``10-15``)."""
    season_end: ShortStr
    """Last day of the heating season, ``MM-DD`` (``04-15``), inclusive."""
    utc_offset_min: int
    """Local time of the site in whole hours (480 for China Standard Time): days, months and tariff hours are local
    (meter aggregates are per UTC hour, so a local day must start on an hour boundary)."""
    building: Handle
    """The site's ``cemp.building`` handle under the owner's prefix; the ``site`` tx writes its record."""
    utility_accounts: tuple[ShortStr, ...]
    """Electricity account numbers whose bills belong to this site (ascending, unique)."""
    hdd18_annual: int
    """Normal heating degree days (base 18 °C, K·d per year) of the site's climate, for HDD normalisation."""


@dataclass(frozen=True, slots=True)
class SiteRecord:
    """State of one version of a site."""

    payload: SitePayload
    org: ShortStr
    """Owner org whose admin signed it."""
    tx_hash: Hash32
    height: Height
    time_ms: TimestampMs


@dataclass(frozen=True, slots=True)
class BoundaryDevice:
    handle: Handle
    """A registered device."""
    subsystem: ShortStr
    """The subsystem it belongs to for this site: ``core-heating``, ``pipe-heating``, ``storage-tank``,
    ``heat-exchanger``, ``pump-room``, ``electrical``, ``incoming`` ..."""
    carrier: ShortStr
    """``electricity`` (an energy meter counted as activity data), ``heat`` (a heat meter: delivered heat) or
    ``none`` (context only, e.g. temperatures)."""
    quantity: ShortStr
    """Counter quantity read for the activity data, e.g. ``energy.import`` or ``heat.energy`` (empty for none)."""


@dataclass(frozen=True, slots=True)
class BoundaryPayload:
    """Payload of a ``boundary`` tx: which devices belong to a site from ``effective_from_ms`` on."""

    site_id: ShortStr
    version: int
    """1 for the first boundary; exactly one more than the latest one after that."""
    effective_from_ms: TimestampMs
    """Start of the hour from which this boundary is in force (a multiple of 3,600,000 ms); later than the
    previous version's. Periods are computed hour by hour with the boundary in force at each hour."""
    devices: tuple[BoundaryDevice, ...]
    """Ascending by handle, unique."""
    main_meter: Handle | None
    """The site's main (incoming) electricity meter, one of ``devices``; None if the site has none."""
    note: Text


@dataclass(frozen=True, slots=True)
class BoundaryRecord:
    payload: BoundaryPayload
    tx_hash: Hash32
    height: Height
    time_ms: TimestampMs


@dataclass(frozen=True, slots=True)
class Factor:
    key: ShortStr
    """``grid.national``, ``grid.region.north-china``, ``grid.province.inner-mongolia``,
    ``grid.excl-traded-non-fossil``, ``grid.fossil-only``, ``fuel.coal.bituminous``, ``fuel.gas.natural``,
    ``heat.purchased``, ``ncv.coal.bituminous`` ..."""
    value_e6: int
    """Value × 1,000,000 in ``unit`` (exact: every shipped value has at most six decimals)."""
    unit: ShortStr
    """``tCO2/MWh``, ``tCO2/TJ``, ``tCO2/GJ``, ``GJ/t``, ``MJ/Nm3`` ..."""
    year: int
    """Data year of this value (fuel defaults carry the year of their table)."""
    source: Text
    """Document the value comes from (announcement number, standard, table)."""


@dataclass(frozen=True, slots=True)
class FactorSetPayload:
    """Payload of a ``factors`` tx (regulator only): one versioned set of official factors for a data year."""

    set_id: ShortStr
    """e.g. ``cn-mee-2023``; one set id per data year."""
    version: int
    data_year: int
    """Year the grid factors describe; a period uses the set of its year or the latest earlier one."""
    published: ShortStr
    """Publication date of the grid announcement, ``YYYY-MM-DD``."""
    document: Text
    """The announcement, e.g. ``MEE/NBS 公告2025年第47号``."""
    factors: tuple[Factor, ...]
    """Ascending by key, unique."""


@dataclass(frozen=True, slots=True)
class FactorSetRecord:
    payload: FactorSetPayload
    tx_hash: Hash32
    height: Height
    sender: PublicKey


@dataclass(frozen=True, slots=True)
class RatingPayload:
    """Payload of a ``rating`` tx: a carbon-efficiency grade (碳效码) of a site for a period."""

    site_id: ShortStr
    period: ShortStr
    """Period label (``2025/26-season``, ``2026``, ``2026-Q1``, ``2026-01``)."""
    scheme: ShortStr
    """Rating scheme id, e.g. ``cemp-k5-v1`` (five grades from K)."""
    thresholds_e3: tuple[int, ...]
    """Four upper bounds of grades 1-4 in thousandths of K (Zhejiang: 600, 800, 1200, 2000); K above the last
    is grade 5."""
    benchmark: Text
    """What K divides by, e.g. ``gas-boiler baseline 52.3 kgCO2/m2``."""
    k_location_e6: int
    """K with location-based Scope 2, × 1,000,000."""
    k_market_e6: int
    """K with market-based Scope 2, × 1,000,000."""
    grade_location: int
    grade_market: int
    inventory_sha256: Hash32
    """SHA-256 of the canonical inventory JSON the K values were computed from."""


@dataclass(frozen=True, slots=True)
class RatingRecord:
    payload: RatingPayload
    org: ShortStr
    tx_hash: Hash32
    height: Height
    time_ms: TimestampMs


@dataclass(frozen=True, slots=True)
class ReportPayload:
    """Payload of a ``report`` tx: an issued inventory report, anchored by its hash and key figures."""

    site_id: ShortStr
    period: ShortStr
    """Period label (``2025/26-season``, ``2026``, ``2026-Q1``, ``2026-01``)."""
    report_sha256: Hash32
    """SHA-256 of the canonical JSON of the report model (``accounting.report.report_sha256``), which every
    rendering (HTML, PDF, XLSX) embeds."""
    inventory_sha256: Hash32
    """Digest of the inventory the report was built from."""
    as_of_height: Height
    """Committed height the inventory was computed at."""
    energy_wh: int
    heat_wh: int
    co2_location_g: int
    """Location-based Scope 2, grams (the inventory's micrograms floored to grams)."""
    co2_market_g: int
    aggregates_root: Hash32
    """Merkle root over the per-device roots of the hourly aggregates used."""
    readings_txs_root: Hash32
    """RFC 6962 root over the hashes (ascending) of every signed readings tx behind those aggregates."""


@dataclass(frozen=True, slots=True)
class ReportRecord:
    payload: ReportPayload
    org: ShortStr
    tx_hash: Hash32
    height: Height
    time_ms: TimestampMs
