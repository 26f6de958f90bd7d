"""authenticatorConfig (0x0D): enableEnterpriseAttestation (profiles with enterprise
attestation), toggleAlwaysUv and setMinPINLength."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwtoken.emulator.applets.fido.ctap2.client_pin import Permission
from hwtoken.emulator.applets.fido.ctap2.credential_management import canonical
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params, check_type

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator

ENABLE_ENTERPRISE_ATTESTATION = 0x01
TOGGLE_ALWAYS_UV = 0x02
SET_MIN_PIN_LENGTH = 0x03
MAX_MIN_PIN_LENGTH = 63


class AuthenticatorConfig:
    """Authenticator-wide settings, guarded by a token with the acfg permission."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def process(self, p: Params) -> None:
        sub = p.req(0x01, int)
        sub_params_raw = p.raw(0x02)
        sub_params = Params(sub_params_raw)
        subcommands = [TOGGLE_ALWAYS_UV, SET_MIN_PIN_LENGTH]
        if self.auth.profile.enterprise_attestation:
            subcommands.append(ENABLE_ENTERPRISE_ATTESTATION)
        if sub not in subcommands:  # (no vendor prototype commands)
            raise Ctap2Error(ERR.INVALID_SUBCOMMAND)
        self._authorise(p, sub, sub_params_raw)
        state = self.auth.state
        if sub == ENABLE_ENTERPRISE_ATTESTATION:  # stays on until a reset
            state.set_config(ep=True)
            state.commit()
            return None
        if sub == TOGGLE_ALWAYS_UV:
            state.set_config(always_uv=not state.always_uv)
            state.commit()
            return None
        new_len = sub_params.opt(0x01, int)
        rp_ids = sub_params.opt(0x02, list)
        force = sub_params.opt(0x03, bool) or False
        if rp_ids is not None:
            rp_ids = [check_type(r, str) for r in rp_ids]
            if len(rp_ids) > self.auth.profile.max_rpids_for_min_pin:
                raise Ctap2Error(ERR.INVALID_PARAMETER)
        current = state.min_pin_length
        if new_len is None:
            new_len = current
        if new_len < current or new_len > MAX_MIN_PIN_LENGTH:
            raise Ctap2Error(ERR.PIN_POLICY_VIOLATION)
        if force and not state.pin_set:
            raise Ctap2Error(ERR.PIN_NOT_SET)
        state.set_config(min_pin_length=new_len)
        if rp_ids is not None:
            state.set_config(min_pin_rp_ids=rp_ids)
        if state.pin_set and (force or new_len > state.pin_length):
            state.set_config(force_pin_change=True)
        state.commit()
        return None

    def _authorise(self, p: Params, sub: int, sub_params: Any) -> None:
        pin_auth = p.opt(0x04, bytes)
        state = self.auth.state
        if pin_auth is None:
            if state.pin_set or state.always_uv:
                raise Ctap2Error(ERR.PUAT_REQUIRED)
            return
        proto = self.auth.pin.protocol_param(p, 0x03)
        message = b"\xff" * 32 + b"\x0d" + bytes([sub])
        if sub_params is not None:
            message += canonical(sub_params)
        self.auth.pin.verify(proto, message, pin_auth)
        self.auth.pin.require(Permission.AUTHENTICATOR_CFG)
