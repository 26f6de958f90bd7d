"""Typed access to a decoded CTAP2 request map (wrong type / missing -> CTAP error)."""

from __future__ import annotations

from typing import Any, TypeVar

from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error

T = TypeVar("T")


def check_type(value: Any, typ: type[T]) -> T:
    """``value`` if it is a ``typ`` (bools are not ints), else CBOR_UNEXPECTED_TYPE."""
    ok = type(value) is int if typ is int else isinstance(value, typ)
    if not ok:
        raise Ctap2Error(ERR.CBOR_UNEXPECTED_TYPE)
    return value


class Params:
    """A request map whose members are fetched with their expected type."""

    def __init__(self, data: Any) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise Ctap2Error(ERR.CBOR_UNEXPECTED_TYPE)
        self.data: dict[Any, Any] = data

    def __contains__(self, key: Any) -> bool:
        return key in self.data

    def req(self, key: Any, typ: type[T]) -> T:
        if key not in self.data:
            raise Ctap2Error(ERR.MISSING_PARAMETER)
        return check_type(self.data[key], typ)

    def opt(self, key: Any, typ: type[T]) -> T | None:
        value = self.data.get(key)
        if value is None:
            return None
        return check_type(value, typ)

    def raw(self, key: Any) -> Any:
        return self.data.get(key)


def descriptor(value: Any) -> tuple[str, bytes]:
    """A PublicKeyCredentialDescriptor -> (type, id)."""
    p = Params(value)
    return p.req("type", str), p.req("id", bytes)


def descriptor_list(value: Any) -> list[tuple[str, bytes]]:
    """A list of PublicKeyCredentialDescriptors (unknown fields ignored)."""
    return [descriptor(v) for v in check_type(value, list)]


def options(value: Any) -> dict[str, bool]:
    """The options map: text keys, boolean values."""
    out: dict[str, bool] = {}
    for k, v in Params(value).data.items():
        out[check_type(k, str)] = check_type(v, bool)
    return out
