"""A simulated phone that speaks the device side of the ADB wire protocol on loopback.

    from device_runner.sim import SimulatedPhone, Faults
    with SimulatedPhone(tmp_path, profile="pixel-8", port=0) as phone:
        phone.serial, phone.port, phone.host_path("/data/local/tmp/x")

See README.md in this folder for the protocol coverage, the shell commands and the battery model.
"""

from device_runner.sim.battery import BatteryConfig, BatteryModel, BatterySnapshot
from device_runner.sim.faults import Faults
from device_runner.sim.phone import SimulatedPhone
from device_runner.sim.profiles import PROFILES, Profile, load_profile

__all__ = ["SimulatedPhone", "Faults", "BatteryModel", "BatteryConfig", "BatterySnapshot", "Profile", "PROFILES",
           "load_profile"]
