"""Invariants of the simulated battery, power and thermal model (driven by an injected clock)."""

from __future__ import annotations

import pytest

from device_runner.sim import BatteryConfig, BatteryModel, Faults
from device_runner.sim.battery import METERED_SHARE, SKIN_THRESHOLDS_C, ocv_v, thermal_status_for
from device_runner.sim.profiles import PIXEL8_ACTIVE_SHARES, PIXEL8_IDLE_SHARES
from pipeline.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def model(faults: Faults | None = None, **config) -> tuple[BatteryModel, Clock]:
    clock = Clock()
    cfg = BatteryConfig(idle_rail_shares=PIXEL8_IDLE_SHARES, active_rail_shares=PIXEL8_ACTIVE_SHARES, **config)
    current = faults or Faults()
    return BatteryModel(cfg, clock=clock, faults=lambda: current), clock


def test_idle_drain_is_idle_power_times_time() -> None:
    battery, clock = model(idle_power_w=0.6)
    s0 = battery.snapshot()
    clock.t += 100.0
    s1 = battery.snapshot()
    assert s1.energy_drawn_mj - s0.energy_drawn_mj == pytest.approx(60_000.0)  # 0.6 W * 100 s
    assert s0.energy_counter_nwh - s1.energy_counter_nwh == pytest.approx(60.0 / 3600 * 1e9, rel=1e-6)
    mean_v = (s0.voltage_mv + s1.voltage_mv) / 2 / 1000
    assert s0.charge_counter_uah - s1.charge_counter_uah == pytest.approx(60.0 / mean_v / 3600 * 1e6, rel=0.01)
    assert s1.time_s == pytest.approx(100.0)


def test_work_costs_core_power_times_cpu_seconds() -> None:
    battery, clock = model(core_power_w=1.5)
    s0 = battery.snapshot()
    battery.add_cpu_work(cpu_s=4.0, wall_s=2.0)
    s1 = battery.snapshot()
    assert s1.energy_drawn_mj - s0.energy_drawn_mj == pytest.approx(6000.0)
    assert s1.current_ua < s0.current_ua < 0  # more negative under load (discharging convention)
    assert s1.power_mw > s0.power_mw
    clock.t += 10.0
    assert battery.snapshot().current_ua == pytest.approx(s0.current_ua, rel=0.01)  # the gauge settles again


def test_rails_meter_90_percent_of_drawn_energy() -> None:
    battery, clock = model()
    s0 = battery.snapshot()
    battery.add_cpu_work(cpu_s=2.0, wall_s=1.0)
    clock.t += 30.0
    s1 = battery.snapshot()
    rails_uws = sum(s1.rails_energy_uws.values()) - sum(s0.rails_energy_uws.values())
    assert rails_uws / 1000 == pytest.approx(METERED_SHARE * (s1.energy_drawn_mj - s0.energy_drawn_mj), rel=1e-3)
    cpu_big = s1.rails_energy_uws["S2M_VDD_CPUCL2"] - s0.rails_energy_uws["S2M_VDD_CPUCL2"]
    assert cpu_big > 0.3 * METERED_SHARE * 3.0 * 1e6
    assert all(v >= 0 for v in s1.rails_energy_uws.values())


def test_voltage_and_level_fall_with_charge() -> None:
    battery, clock = model()
    s0 = battery.snapshot()
    battery.add_cpu_work(cpu_s=20_000.0, wall_s=20_000.0)   # about 30 kJ
    clock.t += 20_000.0
    s1 = battery.snapshot()
    assert s1.level_pct < s0.level_pct
    assert s1.voltage_mv < s0.voltage_mv
    assert ocv_v(0.1) < ocv_v(0.8) < ocv_v(1.0)


def test_temperature_rises_with_load_and_cools_with_time() -> None:
    battery, clock = model()
    idle = battery.snapshot()
    assert idle.thermal_status == 0
    for _ in range(60):
        battery.add_cpu_work(cpu_s=4.0, wall_s=1.0)  # four busy cores for a minute
        clock.t += 1.0
    hot = battery.snapshot()
    assert hot.skin_temperature_c > idle.skin_temperature_c + 5
    assert hot.temperature_decic > idle.temperature_decic
    assert hot.thermal_status == thermal_status_for(hot.skin_temperature_c) >= 1
    clock.t += 1200.0
    cool = battery.snapshot()
    assert cool.skin_temperature_c < hot.skin_temperature_c
    assert cool.thermal_status == 0


def test_thermal_status_thresholds() -> None:
    assert thermal_status_for(30.0) == 0
    assert [thermal_status_for(t + 0.01) for t in SKIN_THRESHOLDS_C] == [1, 2, 3, 4, 5, 6]


def test_faults_charging_counter_and_pinned_status() -> None:
    battery, clock = model(Faults(charging=True, no_energy_counter=True, thermal_status=4))
    s0 = battery.snapshot()
    clock.t += 600.0
    s1 = battery.snapshot()
    assert s1.charging and s1.current_ua > 0
    assert s1.charge_counter_uah > s0.charge_counter_uah
    assert s1.energy_counter_nwh is None
    assert s1.thermal_status == 4 and thermal_status_for(s1.skin_temperature_c) == 4


def test_force_level_keeps_counters_consistent() -> None:
    battery, _ = model()
    battery.force_level(4)
    s = battery.snapshot()
    assert s.level_pct == 4
    assert s.charge_counter_uah == pytest.approx(0.04 * battery.config.capacity_uah, rel=1e-3)


def test_bad_config_and_work_are_refused() -> None:
    with pytest.raises(ConfigError, match="idle_power_w"):
        BatteryConfig(idle_power_w=0)
    with pytest.raises(ConfigError, match="sum to 1"):
        BatteryConfig(idle_rail_shares={"A": 0.5})
    battery, _ = model()
    with pytest.raises(ConfigError):
        battery.add_cpu_work(-1.0, 1.0)
    with pytest.raises(ConfigError, match="thermal_status"):
        Faults(thermal_status=7)
