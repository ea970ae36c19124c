"""The simulated phone's battery, power and temperature model (stated here and in the README).

Power
    P(t) = P_idle + P_active(t). ``P_idle`` is the profile's screen-on idle power (Pixel 8:
    600 mW). Active power comes only from ``add_cpu_work(cpu_s, wall_s)``: each CPU-second of
    work costs ``core_power_w`` joules (Pixel 8: 1.5 W per fully busy big core), so
    E_active = cpu_s * core_power_w, spread evenly over the ``wall_s`` it took.
    Energy drawn = integral of P over wall-clock time since the phone started (idle drain runs
    whether or not anything asks), plus the active energy.

Voltage and current
    Open-circuit voltage falls linearly with charge: V_ocv = 3.45 V + 0.76 V * soc (4.06 V at 80 %).
    Under load the terminal voltage sags by I * R_internal (0.1 ohm). Current I = P / V; the fuel
    gauge reading follows the load through a 1 s moving average (real gauges update about once a
    second). Reported current follows Android's Pixel convention: negative microamps while
    discharging, positive while charging. The "generic" profile reports sysfs current in mA, as
    some vendors do (the snapshot is always in uA).

Counters
    The charge counter (uAh) falls by integral of I dt, the energy counter (nWh) by the energy
    drawn, so both agree with each other and with the power above (energy counter = charge *
    V_ocv at the start, then decremented by exact energy). Level = charge / full charge.

Rails (profiles with an On-Device Power Monitor)
    Cumulative microwatt-seconds since boot per named rail. 90 % of the drawn energy is metered
    (the rest is conversion loss): idle energy is split across rails in fixed shares (display
    largest), active CPU energy goes to the CPU clusters and memory rails.

Temperature
    First-order thermal model: dT/dt = (k * P(t) - (T - T_ambient)) / tau, with k = 4 C/W and
    tau = 90 s; active work arrives as heat impulses (dT = k * E_active / tau). The skin
    temperature (VIRTUAL-SKIN) is T; the thermal status is derived from it with the Pixel 8
    thresholds 39 / 43 / 45 / 46.5 / 52 / 55 C (statuses 1..6). A fault can pin the status.

Charging (fault)
    A plugged USB port supplies ``charge_current_ua`` (500 mA); the battery takes what the load
    leaves over, so the current is positive and the counters rise.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import ConfigError

SKIN_THRESHOLDS_C = (39.0, 43.0, 45.0, 46.5, 52.0, 55.0)  # Pixel 8 VIRTUAL-SKIN, LIGHT..SHUTDOWN
R_INTERNAL_OHM = 0.1
GAUGE_TAU_S = 1.0
METERED_SHARE = 0.9


@dataclass(frozen=True)
class BatteryConfig:
    """Constants of the model (one per profile)."""

    idle_power_w: float = 0.6
    core_power_w: float = 1.5
    capacity_uah: int = 4_452_000          # full charge (CHARGE_FULL)
    design_capacity_uah: int = 4_550_000
    start_level_pct: float = 80.0
    ambient_c: float = 27.0
    thermal_k_c_per_w: float = 4.0
    thermal_tau_s: float = 90.0
    charge_current_ua: int = 500_000
    idle_rail_shares: dict[str, float] = field(default_factory=dict)
    active_rail_shares: dict[str, float] = field(default_factory=dict)
    uptime_at_start_s: float = 100_800.0   # rails are cumulative since boot

    def __post_init__(self) -> None:
        for name in ("idle_power_w", "core_power_w", "thermal_k_c_per_w", "thermal_tau_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"BatteryConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.start_level_pct <= 100:
            raise ConfigError(f"BatteryConfig.start_level_pct must be 0..100, got {self.start_level_pct}")
        for name in ("idle_rail_shares", "active_rail_shares"):
            shares = getattr(self, name)
            if shares and abs(sum(shares.values()) - 1.0) > 1e-6:
                raise ConfigError(f"BatteryConfig.{name} must sum to 1, got {sum(shares.values())}")


@dataclass(frozen=True)
class BatterySnapshot:
    """One reading of the battery (units in the names; current sign: Android/Pixel convention)."""

    time_s: float
    current_ua: int
    voltage_mv: int
    charge_counter_uah: int
    energy_counter_nwh: int | None
    level_pct: int
    temperature_decic: int
    thermal_status: int
    rails_energy_uws: dict[str, int]
    charging: bool
    power_mw: float
    skin_temperature_c: float
    energy_drawn_mj: float


def ocv_v(soc: float) -> float:
    return 3.45 + 0.76 * min(max(soc, 0.0), 1.0)


def thermal_status_for(skin_c: float) -> int:
    return sum(1 for t in SKIN_THRESHOLDS_C if skin_c >= t)


class BatteryModel:
    """Integrates power over time. Thread-safe; ``clock`` is injectable for tests."""

    def __init__(self, config: BatteryConfig | None = None, *, clock: Callable[[], float] = time.monotonic,
                 faults: Callable[[], object] | None = None) -> None:
        self.config = config or BatteryConfig()
        self._clock = clock
        self._faults = faults or (lambda: None)
        self._lock = threading.Lock()
        c = self.config
        self._t0 = self._last = clock()
        self._charge_uah = c.capacity_uah * c.start_level_pct / 100.0
        self._energy_nwh = self._charge_uah * ocv_v(c.start_level_pct / 100.0)  # uAh * V = nWh * 1e-3 -> scaled below
        self._energy_nwh *= 1000.0
        self._gauge_w = 0.0          # moving average of active power (fuel gauge)
        self._temp_c = c.ambient_c + c.thermal_k_c_per_w * c.idle_power_w
        self._drawn_j = 0.0
        self._rails_uws: dict[str, float] = {
            name: share * METERED_SHARE * c.idle_power_w * c.uptime_at_start_s * 1e6
            for name, share in c.idle_rail_shares.items()
        }
        for name in c.active_rail_shares:
            self._rails_uws.setdefault(name, 0.0)

    # --- faults ------------------------------------------------------------------------------
    def _fault(self, name: str, default):
        return getattr(self._faults(), name, default)

    def force_level(self, level_pct: float) -> None:
        """Rebase the charge so that the level reads ``level_pct`` (low-battery fault)."""
        with self._lock:
            self._advance()
            new_charge = self.config.capacity_uah * level_pct / 100.0
            self._energy_nwh += (new_charge - self._charge_uah) * ocv_v(level_pct / 100.0) * 1000.0
            self._charge_uah = new_charge

    # --- the model ---------------------------------------------------------------------------
    def _voltage(self, power_w: float) -> float:
        v = ocv_v(self._charge_uah / self.config.capacity_uah)
        i = power_w / v
        return v - i * R_INTERNAL_OHM if not self._fault("charging", False) else v + 0.15

    def _draw(self, energy_j: float, dt_s: float, power_w: float) -> None:
        """Take ``energy_j`` from the battery (or, while charging, what the charger leaves over)."""
        v = self._voltage(power_w)
        if self._fault("charging", False):
            supplied_j = self.config.charge_current_ua * 1e-6 * v * dt_s
            net_j = energy_j - supplied_j
        else:
            net_j = energy_j
        self._charge_uah -= net_j / v / 3600.0 * 1e6
        self._charge_uah = min(max(self._charge_uah, 0.0), float(self.config.capacity_uah))
        self._energy_nwh -= net_j / 3600.0 * 1e9
        self._drawn_j += energy_j

    def _advance(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        if dt == 0:
            return
        c = self.config
        # idle drain over dt (active work was accounted when it was reported)
        self._draw(c.idle_power_w * dt, dt, c.idle_power_w + self._gauge_w)
        for name, share in c.idle_rail_shares.items():
            self._rails_uws[name] += share * METERED_SHARE * c.idle_power_w * dt * 1e6
        target = c.ambient_c + c.thermal_k_c_per_w * c.idle_power_w
        self._temp_c = target + (self._temp_c - target) * math.exp(-dt / c.thermal_tau_s)
        self._gauge_w *= math.exp(-dt / GAUGE_TAU_S)

    def add_cpu_work(self, cpu_s: float, wall_s: float) -> None:
        """Account ``cpu_s`` CPU-seconds of work that took ``wall_s`` seconds of wall time."""
        if cpu_s < 0 or wall_s < 0:
            raise ConfigError(f"add_cpu_work needs cpu_s >= 0 and wall_s >= 0, got {cpu_s}, {wall_s}")
        c = self.config
        energy_j = cpu_s * c.core_power_w
        with self._lock:
            self._advance()
            self._draw(energy_j, 0.0, c.idle_power_w + energy_j / max(wall_s, GAUGE_TAU_S))
            for name, share in c.active_rail_shares.items():
                self._rails_uws[name] += share * METERED_SHARE * energy_j * 1e6
            self._temp_c += c.thermal_k_c_per_w * energy_j / c.thermal_tau_s
            self._gauge_w += energy_j / GAUGE_TAU_S

    def snapshot(self) -> BatterySnapshot:
        with self._lock:
            self._advance()
            c = self.config
            charging = bool(self._fault("charging", False))
            power_w = c.idle_power_w + self._gauge_w
            v = self._voltage(power_w)
            if charging:
                current_ua = int(c.charge_current_ua - power_w / v * 1e6)
            else:
                current_ua = -int(round(power_w / v * 1e6))
            level = int(round(100.0 * self._charge_uah / c.capacity_uah))
            skin = self._temp_c
            status = thermal_status_for(skin)
            pinned = self._fault("thermal_status", None)
            if pinned is not None:
                status = pinned
                skin = _skin_for_status(pinned)
            return BatterySnapshot(
                time_s=self._last - self._t0,
                current_ua=current_ua,
                voltage_mv=int(round(v * 1000)),
                charge_counter_uah=int(round(self._charge_uah)),
                energy_counter_nwh=None if self._fault("no_energy_counter", False) else int(self._energy_nwh),
                level_pct=min(max(level, 0), 100),
                temperature_decic=int(round(skin * 10 + 5)),   # the cell sits ~0.5 C above skin
                thermal_status=status,
                rails_energy_uws={k: int(v_) for k, v_ in self._rails_uws.items()},
                charging=charging,
                power_mw=power_w * 1000.0,
                skin_temperature_c=skin,
                energy_drawn_mj=self._drawn_j * 1000.0,
            )


def _skin_for_status(status: int) -> float:
    if status == 0:
        return 33.0
    return SKIN_THRESHOLDS_C[status - 1] + 0.5
