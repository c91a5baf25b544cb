"""Older phones: the class of the device asking, and device PINs.

A flow plans its paths for the class of the device it is bound to (``domain.device_classes``):
the class a registering device states, or the class a bound device was registered with. A
device nobody has bound yet has no class and is offered the policy's paths as before.

A device without a platform authenticator is registered with a PIN instead of a passkey. The
PIN step of that registration stores the PIN's argon2id hash, encrypted under the user's key, in
a *pending* authenticator row; the registration's last step binds the device and activates the
PIN on it (``bind_pin``). From then on the PIN counts only with a DPoP proof of that device's key
(``pin_of_device``), under the factor lockout like any other secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from zeropay.domain.authenticators import Authenticator, AuthenticatorKind, Device
from zeropay.domain.device_classes import DeviceClass
from zeropay.domain.errors import invariant
from zeropay.domain.flows import Flow
from zeropay.domain.pins import check_new_pin
from zeropay.services.context import AppContext, UnitOfWork

DEVICE_CLASS = "device_class"  # a registration flow's binding: the class the device states
PIN_AUTHENTICATOR = "pin_authenticator"  # ... and the pending PIN set during the flow


def device_class(
    uow: UnitOfWork, binding: Mapping[str, str], jkt: str | None
) -> DeviceClass | None:
    """The class of the device a flow is for: that of the active device whose key this is,
    else the one a registering device states; None for a key nobody has bound or described.
    A bound device's own class wins, so a flow cannot widen it by stating another."""
    device = uow.devices.by_jkt(jkt) if jkt else None
    if device is not None and device.status == "active":
        return device.device_class
    if DEVICE_CLASS in binding:
        return DeviceClass(binding[DEVICE_CLASS])
    return None


def holds_pin(uow: UnitOfWork, user_id: str, device: Device | None) -> bool:
    return device is not None and pin_of_device(uow, user_id, device) is not None


def pin_of_device(uow: UnitOfWork, user_id: str, device: Device) -> Authenticator | None:
    """The active PIN bound to this device of this user, if it has one."""
    if device.user_id != user_id or device.status != "active":
        return None
    return next(
        (
            a
            for a in uow.authenticators.of_user(user_id)
            if a.kind is AuthenticatorKind.PIN and a.device_id == device.id
        ),
        None,
    )


def pin_hash(ctx: AppContext, pin: Authenticator) -> str:
    invariant(pin.secret_ciphertext is not None, "an active PIN has its hash")
    assert pin.secret_ciphertext is not None
    return ctx.keyring.decrypt(
        pin.secret_ciphertext,
        table="authenticators",
        column="secret",
        row_id=pin.id,
        subject=pin.user_id,
    ).decode()


def set_for_registration(ctx: AppContext, flow: Flow, raw_pin: object) -> dict[str, str]:
    """The PIN step of a device registration: check the PIN the payer chose (``WeakPin``
    otherwise, before anything is stored) and keep its hash in a pending PIN that expires with
    the flow. The binding entries that name it."""
    invariant(flow.user_id is not None, "a PIN is set after the address and password passed")
    assert flow.user_id is not None
    user_id = flow.user_id
    pin = check_new_pin(raw_pin, digits_min=ctx.policy.pin_digits_min)
    encoded = ctx.hasher.hash(pin)  # argon2id, as passwords (NIST 800-63B §5.1.1.2)
    authenticator_id = ctx.new_id("auth")
    sealed = ctx.keyring.encrypt(
        encoded.encode(),
        table="authenticators",
        column="secret",
        row_id=authenticator_id,
        subject=user_id,
    )
    name = flow.binding.get("device_name", "this device")
    pending = Authenticator(
        id=authenticator_id,
        user_id=user_id,
        kind=AuthenticatorKind.PIN,
        label=f"PIN on {name}"[:64],
        status="pending",
        created_at=ctx.now(),
        secret_ciphertext=sealed,
        pending_expires_at=flow.expires_at,
    )
    ctx.run(lambda uow: uow.authenticators.add(pending))
    return {PIN_AUTHENTICATOR: authenticator_id}


def bind_pin(
    ctx: AppContext, uow: UnitOfWork, binding: Mapping[str, str], device: Device
) -> str | None:
    """The registration's last step: the PIN set in the flow becomes the new device's. Its id,
    or None when the device was registered with a passkey instead."""
    authenticator_id = binding.get(PIN_AUTHENTICATOR)
    if authenticator_id is None:
        return None
    pending = uow.authenticators.get(authenticator_id, lock=True)
    activated = (
        pending is not None
        and pending.user_id == device.user_id
        and pending.kind is AuthenticatorKind.PIN
        and uow.authenticators.activate(authenticator_id, ctx.now(), device_id=device.id)
    )
    invariant(activated, "the flow's pending PIN is activated once, on its device")
    return authenticator_id
