"""The ``piv`` mode: a PIV slot made ready for smart-card login, through yubikit's
``PivSession`` (and ykman's PIV helpers) over PC/SC.

For each key (the record's place is the slot, ``9a`` by default):

1. **credentials** -- a random PIN (``--pin-length``, 6 to 8 digits), PUK (8 digits) and
   management key (24 bytes: AES-192 on firmware 5.7 and later, 3DES before), all sealed in
   the record before the key is touched; ``--protect`` stores the management key on the
   key, PIN-protected, as ``ykman piv access change-management-key --protect`` does;
2. **key pair** -- generated on the key in the slot (``--algorithm``, ECCP256 by default);
3. **attestation** -- the slot's attestation certificate must be signed by the key's F9
   certificate, chain to the trusted roots (:mod:`hwtoken.provision.attestation`) and name
   the slot's public key and the key's serial: a key pair made elsewhere is refused;
4. **certificate** -- a CSR for the subject template (``--subject "CN={serial},O=ACME"``),
   signed by the admin's CA (:mod:`hwtoken.provision.ca`), imported into the slot with a
   CHUID and a CCC.

Crash safety: the station writes each step down in the record's journal before the step
it makes possible -- the slot's public key before a new key pair is made (``generating``),
the CSR before it goes to the CA, that the CA was asked (``ca-request``), the certificate
before it is imported. After a crash, ``resume`` (or a retry) reuses what the key and the
journal agree on: a key pair whose public key is the recorded CSR's is kept (no second
key pair), a recorded certificate for it is imported (no second certificate). A key
whose slot changed since (its public key is not the CSR's) gets a new key pair, and the
journal keeps what was issued before, so it can be revoked (``provision list``).

Every credential the station tries is one it knows: the one recorded, the factory default,
or one this inventory set before on this place (``--reprogram``); the PIN metadata
(firmware 5.3+) says which is set, so no retry is spent on the wrong one.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hwtoken.errors import CheckFailed, InvalidInput
from hwtoken.provision.journaled import JournaledConnection
from hwtoken.provision.model import Access, Material, Note, RecordKey, Spec
from hwtoken.provision.protocol import (
    AccessDenied,
    Device,
    Evidence,
    KeyConnection,
    NotProgrammed,
    Presented,
    Station,
    Unsuitable,
)

DEFAULT_PIN = "123456"
DEFAULT_PUK = "12345678"
PUK_LENGTH = 8
MANAGEMENT_KEY_SIZE = 24  # AES-192 and 3DES alike
SUBJECT_FIELDS = ("serial", "slot")  # what a --subject template may name
ACCEPTED_ALL = frozenset({"management-key", "pin", "puk"})


def random_digits(n: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(n))


@dataclass(frozen=True)
class PivCredentials:
    """A PIV applet's PIN, PUK and management key: sealed together as a record's secret."""

    pin: str
    puk: str
    management_key: bytes

    MAGIC = b"piv1"

    @classmethod
    def random(cls, pin_length: int) -> PivCredentials:
        return cls(random_digits(pin_length), random_digits(PUK_LENGTH),
                   secrets.token_bytes(MANAGEMENT_KEY_SIZE))

    def pack(self) -> bytes:
        pin, puk = self.pin.encode("ascii"), self.puk.encode("ascii")
        return self.MAGIC + bytes([len(pin)]) + pin + bytes([len(puk)]) + puk \
            + self.management_key

    @classmethod
    def unpack(cls, data: bytes) -> PivCredentials:
        if not data.startswith(cls.MAGIC):
            raise ValueError("not a PIV record's secret")
        rest = data[len(cls.MAGIC):]
        pin = rest[1:1 + rest[0]]
        rest = rest[1 + rest[0]:]
        puk = rest[1:1 + rest[0]]
        key = rest[1 + rest[0]:]
        if len(key) != MANAGEMENT_KEY_SIZE:
            raise ValueError("a PIV record's secret holds a 24-byte management key")
        return cls(pin.decode("ascii"), puk.decode("ascii"), key)

    def __repr__(self) -> str:  # never show them
        return "PivCredentials(<hidden>)"


# -- the subject template -------------------------------------------------------------------
class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise InvalidInput(f"--subject: unknown field {{{key}}}: use "
                           + ", ".join(f"{{{f}}}" for f in SUBJECT_FIELDS))


def render_subject(template: str, serial: int, slot: str) -> str:
    """The subject (RFC 4514) of key ``serial``'s CSR: ``{serial}`` and ``{slot}`` filled."""
    try:
        return template.format_map(_Fields(serial=str(serial), slot=slot))
    except InvalidInput:  # an unknown field: it says so (it is a ValueError too)
        raise
    except (ValueError, IndexError, AttributeError) as exc:
        raise InvalidInput(f"--subject {template!r} is not a template: {exc} (write a "
                           "literal brace as {{ or }})") from None


def check_subject(template: str) -> None:
    """A ``--subject`` template fills in and parses as an RFC 4514 name, before any key
    is touched."""
    rendered = render_subject(template, 12345678, "9a")
    try:
        name = _subject_name(rendered)
    except (ValueError, KeyError, IndexError) as exc:
        raise InvalidInput(f"--subject {template!r} is not an RFC 4514 name "
                           f"(CN=...,O=...): {exc}") from None
    if not len(name):
        raise InvalidInput("--subject is empty: give at least CN=...")


def _subject_name(subject: str) -> Any:
    from cryptography import x509

    return x509.Name.from_rfc4514_string(subject)


# -- the driver ------------------------------------------------------------------------------
def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def fingerprint(public_key: Any | None) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo (``none`` for no key)."""
    return hashlib.sha256(_spki(public_key)).hexdigest() if public_key is not None else "none"


def verify_signature(public_key: Any, signature: bytes, message: bytes) -> bool:
    """``signature`` is ``public_key``'s over ``message`` (SHA-256; PKCS#1 v1.5 for RSA)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True


class PivDriver:
    """``piv``: random credentials, and the check that the key accepts them, holds the
    certificate this inventory recorded, and signs with the key it certifies."""

    def material(self, spec: Spec, serial: int) -> Material:
        creds = PivCredentials.random(spec.pin_length)
        return Material(creds.pack(), {
            "algorithm": spec.algorithm,
            "subject": render_subject(spec.subject, serial, spec.target),
            "protect": "1" if spec.protect else "0"})

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        from cryptography import x509

        nonce = secrets.token_bytes(32)
        ev = conn.calculate(spec, Presented(nonce, material))
        if not isinstance(ev, Evidence) or ev.accepted != ACCEPTED_ALL or not ev.certificate:
            return None
        cert = x509.load_der_x509_certificate(ev.certificate)
        wanted = {"recorded": "1", "chuid": "1", "ccc": "1",
                  "protected": material.params.get("protect", "0")}
        if any(ev.state.get(k) != v for k, v in wanted.items()):
            return None
        return counter if verify_signature(cert.public_key(), ev.signature, nonce) else None


# -- the connection --------------------------------------------------------------------------
def _slot(spec: Spec) -> Any:
    from yubikit.piv import SLOT

    return SLOT(int(spec.target, 16))


def _current(notes: list[Note], kind: str, after: int = -1) -> Note | None:
    """The last note of ``kind`` of the current generation (after index ``after``)."""
    found = [n for i, n in enumerate(notes) if n.current and n.kind == kind and i > after]
    return found[-1] if found else None


def _index(notes: list[Note], note: Note | None) -> int:
    return -1 if note is None else max(i for i, n in enumerate(notes) if n is note)


class _PivConnection(JournaledConnection):
    """A PIV session on one key, for its ``piv`` records."""

    application = "piv"

    def __init__(self, session: Any, device: Device, station: Station) -> None:
        super().__init__(device, station)
        self.s = session

    # -- helpers ------------------------------------------------------------------------
    def _trust(self) -> Any:
        from hwtoken.provision import attestation

        trust = self.station.trust or attestation.yubico()
        if self.device.virtual:
            root = attestation.virtual_root(self.device.spec[len("emu:"):])
            if root is not None:
                trust = trust.with_root(root, f"the root of {self.device.spec}")
        return trust

    def _metadata_default(self, which: str) -> bool | None:
        """Whether the PIN/PUK/management key is the factory default (None: firmware
        before 5.3 cannot say)."""
        from yubikit.core import NotSupportedError

        get = {"pin": self.s.get_pin_metadata, "puk": self.s.get_puk_metadata,
               "management-key": self.s.get_management_key_metadata}[which]
        try:
            return bool(get().default_value)
        except NotSupportedError:
            return None

    def _slot_public_key(self, spec: Spec) -> Any | None:
        """The public key in the slot (None if it holds none)."""
        from yubikit.core import NotSupportedError
        from yubikit.core.smartcard import ApduError

        try:
            return self.s.get_slot_metadata(_slot(spec)).public_key
        except ApduError:
            return None
        except NotSupportedError:  # before 5.3: a key made on the key attests
            try:
                return self.s.attest_key(_slot(spec)).public_key()
            except ApduError:
                return None

    def _certificate(self, spec: Spec) -> Any | None:
        from yubikit.core.smartcard import ApduError

        try:
            return self.s.get_certificate(_slot(spec))
        except (ApduError, ValueError):
            return None

    def _authenticates(self, key: bytes) -> bool:
        from yubikit.core import BadResponseError
        from yubikit.core.smartcard import ApduError

        try:
            self.s.authenticate(key)
        except (ApduError, BadResponseError, ValueError):
            return False
        return True

    def _pin_ok(self, pin: str) -> bool:
        from yubikit.piv import InvalidPinError

        try:
            self.s.verify_pin(pin)
        except InvalidPinError:
            return False
        return True

    def _puk_ok(self, puk: str) -> bool:
        from yubikit.piv import InvalidPinError

        try:
            self.s.change_puk(puk, puk)
        except InvalidPinError:
            return False
        return True

    def _earlier(self, key: RecordKey) -> list[PivCredentials]:
        """Credentials this inventory set on this place before (older generations)."""
        found = []
        for secret in self._earlier_secrets(key):
            with contextlib.suppress(ValueError):
                found.append(PivCredentials.unpack(secret))
        return found

    # -- KeyConnection --------------------------------------------------------------------
    def occupant(self, spec: Spec) -> str | None:
        """What the slot holds and whether the applet's credentials were changed; first
        of all, whether the key is genuine (its F9 certificate chains to the roots)."""
        from yubikit.core.smartcard import ApduError
        from yubikit.piv import SLOT

        from hwtoken.provision import attestation

        try:
            f9 = self.s.get_certificate(SLOT.ATTESTATION)
        except (ApduError, ValueError):
            raise Unsuitable(f"{self.device.spec}: its PIV applet has no attestation "
                             "certificate, so a key made on it cannot be proven") from None
        try:
            attestation.chain_to_root(f9, self._trust())
        except attestation.AttestationFailed as exc:
            raise Unsuitable(f"key {self.device.serial} is refused: {exc}") from None
        held = []
        if self._slot_public_key(spec) is not None or self._certificate(spec) is not None:
            held.append(f"PIV slot {spec.target} holds a key or certificate")
        defaults = [self._metadata_default(w) for w in ("pin", "puk", "management-key")]
        if defaults[2] is None:
            from yubikit.piv import DEFAULT_MANAGEMENT_KEY

            defaults = [None, None, self._authenticates(DEFAULT_MANAGEMENT_KEY)]
        changed = [w for w, d in zip(("PIN", "PUK", "management key"), defaults, strict=True)
                   if d is False]
        if changed:
            held.append(f"its PIV {', '.join(changed)} {'is' if len(changed) == 1 else 'are'} "
                        "not the factory default")
        return "; ".join(held) or None

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        creds = PivCredentials.unpack(material.secret)
        key = self._record(spec)
        self._keep_credentials(key, material.secret)
        self._credentials(spec, creds, material.params, key)
        self._step("piv-credentials", key)
        public = self._key_pair(spec, material.params, key)
        self._attest(spec, public, key)
        csr = self._csr(spec, creds, material.params, key, public)
        cert = self._issue(spec, key, csr)
        self.s.authenticate(creds.management_key)
        self._import(spec, cert)
        self._step("piv-imported", key)

    def calculate(self, spec: Spec, challenge: Any) -> Evidence:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.serialization import Encoding
        from yubikit.core.smartcard import ApduError
        from yubikit.piv import KEY_TYPE, OBJECT_ID

        if not isinstance(challenge, Presented):
            raise NotProgrammed("a PIV slot is checked with its credentials")
        creds = PivCredentials.unpack(challenge.material.secret)
        accepted = set()
        if self._authenticates(creds.management_key):
            accepted.add("management-key")
        if self._metadata_default("pin") is not True and self._pin_ok(creds.pin):
            accepted.add("pin")
        if self._metadata_default("puk") is not True and self._puk_ok(creds.puk):
            accepted.add("puk")
        cert = self._certificate(spec)
        if cert is None or "pin" not in accepted:
            return Evidence(frozenset(accepted))
        state = {"protected": "1" if self._protected(creds) else "0",
                 "recorded": "0", "chuid": "0", "ccc": "0"}
        latest = _current(self._journal().notes(self._record(spec)), "certificate")
        if latest is not None and latest.value == cert.public_bytes(Encoding.PEM).decode():
            state["recorded"] = "1"
        for name, obj in (("chuid", OBJECT_ID.CHUID), ("ccc", OBJECT_ID.CAPABILITY)):
            with contextlib.suppress(ApduError):
                state[name] = "1" if self.s.get_object(obj) else "0"
        public = self._slot_public_key(spec)
        if public is None or _spki(public) != _spki(cert.public_key()):
            return Evidence(frozenset(accepted), cert.public_bytes(Encoding.DER), b"", state)
        self.s.verify_pin(creds.pin)  # a slot whose PIN policy is "always" (9c) asks anew
        signature = self.s.sign(_slot(spec), KEY_TYPE.from_public_key(public), challenge.nonce,
                                hashes.SHA256(), padding.PKCS1v15())
        return Evidence(frozenset(accepted), cert.public_bytes(Encoding.DER), signature, state)

    # -- the steps ----------------------------------------------------------------------
    def _credentials(self, spec: Spec, creds: PivCredentials, params: dict[str, str],
                     key: RecordKey) -> None:
        """PIN, PUK and management key from whatever they are (the factory default, the
        recorded ones, an earlier generation's) to the recorded ones."""
        from ykman.piv import pivman_change_pin, pivman_set_mgm_key
        from yubikit.piv import DEFAULT_MANAGEMENT_KEY, MANAGEMENT_KEY_TYPE

        earlier = self._earlier(key)
        management = next((k for k in (creds.management_key, DEFAULT_MANAGEMENT_KEY,
                                       *(e.management_key for e in earlier))
                           if self._authenticates(k)), None)
        if management is None:
            raise AccessDenied("the PIV management key is neither the factory default nor "
                               "one this inventory set: reset the PIV applet (`ykman piv "
                               "reset`) to provision this key")
        pin = self._find("pin", creds.pin, DEFAULT_PIN, [e.pin for e in earlier], self._pin_ok)
        if pin != creds.pin:
            pivman_change_pin(self.s, pin, creds.pin)
        self.s.verify_pin(creds.pin)
        puk = self._find("puk", creds.puk, DEFAULT_PUK, [e.puk for e in earlier], self._puk_ok)
        if puk != creds.puk:
            self.s.change_puk(puk, creds.puk)
        protect = params.get("protect") == "1"
        if management != creds.management_key or self._protected(creds) != protect:
            self.s.authenticate(management)
            kind = (MANAGEMENT_KEY_TYPE.AES192 if tuple(self.s.version) >= (5, 7, 0)
                    else MANAGEMENT_KEY_TYPE.TDES)
            pivman_set_mgm_key(self.s, creds.management_key, kind, store_on_device=protect)
        self.s.authenticate(creds.management_key)

    def _find(self, which: str, ours: str, default: str, earlier: list[str],
              accepts: Any) -> str:
        """The PIN or PUK set now: asked of the metadata when the key can say, else tried
        (the recorded one first, which is the one set after a crash)."""
        is_default = self._metadata_default(which)
        if is_default:
            return default
        candidates = [ours, *earlier] if is_default is False else [ours, default, *earlier]
        for value in dict.fromkeys(candidates):
            if accepts(value):
                return value
        raise AccessDenied(f"the PIV {which.upper()} is neither the factory default nor one "
                           "this inventory set: reset the PIV applet (`ykman piv reset`) to "
                           "provision this key")

    def _protected(self, creds: PivCredentials) -> bool:
        """The management key is stored on the key, PIN-protected (PIN verified)."""
        from ykman.piv import get_pivman_data, get_pivman_protected_data

        if not get_pivman_data(self.s).mgm_key_protected:
            return False
        try:
            stored = get_pivman_protected_data(self.s).key
        except Exception:  # noqa: BLE001 - unreadable: not what --protect leaves
            return False
        return stored == creds.management_key

    def _key_pair(self, spec: Spec, params: dict[str, str], key: RecordKey) -> Any:
        """The slot's key pair: the one the recorded CSR is for, or the one made before a
        crash, or a new one (its predecessor written down first)."""
        from yubikit.piv import KEY_TYPE, PIN_POLICY, TOUCH_POLICY

        journal = self._journal()
        notes = journal.notes(key)
        public = self._slot_public_key(spec)
        csr_note = _current(notes, "csr")
        if csr_note is not None and public is not None \
                and _spki(_load_csr(csr_note.value).public_key()) == _spki(public):
            return public  # the CSR's key pair: keep it
        making = _current(notes, "generating", after=_index(notes, csr_note))
        if making is not None and public is not None and making.value != fingerprint(public):
            return public  # made before a crash, its CSR not written yet
        journal.note(key, "generating", fingerprint(public))
        kind = KEY_TYPE[params.get("algorithm", "ECCP256")]
        try:
            self.s.check_key_support(kind, PIN_POLICY.DEFAULT, TOUCH_POLICY.DEFAULT, True)
        except Exception as exc:  # noqa: BLE001 - NotSupportedError and kin
            raise CheckFailed(f"this key cannot generate {kind.name} keys ({exc})") from None
        public = self.s.generate_key(_slot(spec), kind, PIN_POLICY.DEFAULT, TOUCH_POLICY.DEFAULT)
        self._step("piv-generate", key)
        return public

    def _attest(self, spec: Spec, public: Any, key: RecordKey) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding
        from yubikit.core.smartcard import ApduError
        from yubikit.piv import SLOT

        from hwtoken.provision import attestation

        try:
            statement = self.s.attest_key(_slot(spec))
            f9 = self.s.get_certificate(SLOT.ATTESTATION)
        except ApduError:
            raise attestation.AttestationFailed(f"the key in PIV slot {spec.target} cannot be "
                                                "attested: it was not generated on the key"
                                                ) from None
        assert self.device.serial is not None
        attestation.check(statement, f9, self._trust(), public, self.device.serial,
                          spec.target)
        pem = statement.public_bytes(Encoding.PEM).decode()
        noted = _current(self._journal().notes(key), "attestation")
        if noted is None or noted.value != pem:
            self._journal().note(key, "attestation", pem)

    def _csr(self, spec: Spec, creds: PivCredentials, params: dict[str, str],
             key: RecordKey, public: Any) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        from ykman.piv import sign_csr_builder

        note = _current(self._journal().notes(key), "csr")
        if note is not None:
            csr = _load_csr(note.value)
            if _spki(csr.public_key()) == _spki(public):
                return csr
        self.s.verify_pin(creds.pin)
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            _subject_name(params.get("subject", "")))
        csr = sign_csr_builder(self.s, _slot(spec), public, builder)
        self._journal().note(key, "csr", csr.public_bytes(Encoding.PEM).decode())
        self._step("piv-csr", key)
        return csr

    def _issue(self, spec: Spec, key: RecordKey, csr: Any) -> Any:
        """The certificate for ``csr``: the one recorded for it, or the CA's (written
        down before it is imported)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        from hwtoken.provision.ca import check_issued

        journal = self._journal()
        notes = journal.notes(key)
        since = _index(notes, _current(notes, "csr"))
        recorded = _current(notes, "certificate", after=since)
        if recorded is not None:
            cert = _load_certificate(recorded.value)
            if _spki(cert.public_key()) == _spki(csr.public_key()):
                return cert
        signer = self.station.signer
        if signer is None:
            raise CheckFailed(f"PIV slot {spec.target} needs its certificate from a CA: pass "
                              "--ca-cert and --ca-key, or --ca-command")
        request = hashlib.sha256(csr.public_bytes(Encoding.DER)).hexdigest()
        journal.note(key, "ca-request", f"{signer.description}: CSR sha256 {request}")
        cert = signer.sign(csr)
        check_issued(cert, csr, signer.description)
        journal.note(key, "certificate", cert.public_bytes(Encoding.PEM).decode())
        self._step("piv-signed", key)
        return cert

    def _import(self, spec: Spec, cert: Any) -> None:
        from ykman.piv import generate_ccc, generate_chuid
        from yubikit.piv import OBJECT_ID

        self.s.put_certificate(_slot(spec), cert)
        self.s.put_object(OBJECT_ID.CHUID, generate_chuid())
        self.s.put_object(OBJECT_ID.CAPABILITY, generate_ccc())


def _load_csr(pem: str) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_csr(pem.encode())


def _load_certificate(pem: str) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode())


class YubikitPivProgrammer:
    """The PIV applet through yubikit's PivSession over PC/SC (pcscd; for a virtual key
    the vpcd link, or its card OS in-process, as :mod:`hwtoken.yubikey.oath` opens it)."""

    name = "yubikit-piv"

    def __init__(self, station: Station | None = None) -> None:
        self.station = station or Station()

    def check_suitable(self, device: Device) -> None:
        from hwtoken.provision.programmers import require_interface

        require_interface(device, "ccid", "PIV applet (no smart-card interface)")

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        from yubikit.core import ApplicationNotAvailableError
        from yubikit.piv import PivSession

        from hwtoken.provision.programmers import model_of, open_smartcard

        self.check_suitable(device)
        with open_smartcard(device) as conn:
            try:
                session = PivSession(conn)
            except ApplicationNotAvailableError:
                raise Unsuitable(f"{model_of(device)} has no PIV applet (or it is "
                                 "disabled)") from None
            yield _PivConnection(session, device, self.station)

