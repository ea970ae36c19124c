"""Faults the simulated phone can be told to show, so that error paths are tested against a real peer."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Faults:
    """What should go wrong. Set at construction or later with ``phone.faults = Faults(...)``.

    drop_after_bytes:   close the TCP connection once this many bytes have been received on it
                        (counted per connection, header bytes included).
    drop_connections:   how many connections the drop fault hits before it stops (None = every one);
                        the default 1 lets a client's reconnect-and-retry succeed.
    corrupt_push:       flip one byte of every file written through sync SEND, after DONE.
    refuse_auth:        never accept a key: answer signatures with a new token and public keys with
                        silence (a phone whose "Allow USB debugging?" prompt is never accepted).
    full_disk:          sync SEND fails with "No space left on device" and leaves nothing behind.
    thermal_status:     pin the reported thermal status (0..6) and temperatures that match it.
    battery_level_pct:  set the battery level (the charge counter follows) when the fault is applied.
    no_energy_counter:  the battery's energy counter is unsupported (snapshot gives None).
    charging:           USB plugged in: status Charging, positive current, counters rising.
    slow_factor:        latency multiplier the simulated benchmark app applies to its measured work.
    app_crash:          the benchmark app's process dies right after it starts, without writing a result
                        (a native crash or an OOM kill on a phone).
    """

    drop_after_bytes: int | None = None
    drop_connections: int | None = 1
    corrupt_push: bool = False
    refuse_auth: bool = False
    full_disk: bool = False
    thermal_status: int | None = None
    battery_level_pct: int | None = None
    no_energy_counter: bool = False
    charging: bool = False
    slow_factor: float = 1.0
    app_crash: bool = False

    def __post_init__(self) -> None:
        if self.drop_after_bytes is not None and self.drop_after_bytes < 0:
            raise ConfigError(f"Faults.drop_after_bytes must be >= 0 or None, got {self.drop_after_bytes}")
        if self.drop_connections is not None and self.drop_connections < 1:
            raise ConfigError(f"Faults.drop_connections must be >= 1 or None, got {self.drop_connections}")
        if self.thermal_status is not None and not 0 <= self.thermal_status <= 6:
            raise ConfigError(f"Faults.thermal_status must be one of 0..6 or None, got {self.thermal_status}")
        if self.battery_level_pct is not None and not 0 <= self.battery_level_pct <= 100:
            raise ConfigError(f"Faults.battery_level_pct must be 0..100 or None, got {self.battery_level_pct}")
        if not self.slow_factor > 0:
            raise ConfigError(f"Faults.slow_factor must be > 0, got {self.slow_factor}")
