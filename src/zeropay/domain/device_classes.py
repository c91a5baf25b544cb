"""Device classes: what a phone can keep its keys in, as it says at registration.

- ``platform``: a platform authenticator (biometric user verification) and a secure key store.
  It makes a passkey when it is registered; every path of the policy is open to it.
- ``key_store``: a secure key store (the device key cannot be copied out, PSD2 RTS Art. 7) but no
  platform authenticator: no passkey. It is registered with a PIN instead.
- ``software``: neither. Its device key is held in software, so it could be copied; the PIN,
  checked by the server and locked after 5 failures, is what a copy of the key still lacks.

The server cannot verify what an old phone holds, so a class only ever narrows: the policy may
give ``key_store`` fewer paths than ``platform`` and ``software`` fewer than ``key_store``, never
more (``domain.policy`` refuses a file that does), and a device that claims a weaker class than
it is only loses rights. A device with a passkey is ``platform``: the passkey path of device
registration is open to that class alone.
"""

from __future__ import annotations

from enum import StrEnum

from zeropay.domain.errors import InvalidInput
from zeropay.domain.factors import Factor


class DeviceClass(StrEnum):
    PLATFORM = "platform"
    KEY_STORE = "key_store"
    SOFTWARE = "software"


# Strongest first: each class may use at most what the one before it may use.
STRONGEST_FIRST: tuple[DeviceClass, ...] = (
    DeviceClass.PLATFORM,
    DeviceClass.KEY_STORE,
    DeviceClass.SOFTWARE,
)

# Factors a device of the class cannot present at all: WebAuthn with user verification needs a
# platform authenticator.
CANNOT_PRESENT: dict[DeviceClass, frozenset[Factor]] = {
    DeviceClass.PLATFORM: frozenset(),
    DeviceClass.KEY_STORE: frozenset({Factor.PASSKEY}),
    DeviceClass.SOFTWARE: frozenset({Factor.PASSKEY}),
}

DEFAULT = DeviceClass.PLATFORM  # what a registration that names no class means (as before)


def registered_as(stated: DeviceClass, *, made_passkey: bool) -> DeviceClass:
    """The class a registered device keeps: a device with a passkey is ``platform``; one that
    said ``platform`` but was registered without a passkey holds at most a key store."""
    if made_passkey:
        return DeviceClass.PLATFORM
    return DeviceClass.KEY_STORE if stated is DeviceClass.PLATFORM else stated


def parse_device_class(raw: object) -> DeviceClass:
    if raw is None:
        return DEFAULT
    if isinstance(raw, str):
        try:
            return DeviceClass(raw)
        except ValueError:
            pass
    raise InvalidInput(
        "unknown device class",
        field="device.device_class",
        expected=[c.value for c in STRONGEST_FIRST],
    )
