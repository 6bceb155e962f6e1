"""EV2 secure messaging against NXP's published examples, and the emulated chip's refusals.

The byte values are AN12196 ("NTAG 424 DNA and NTAG 424 DNA TagTamper features and hints"),
rev. 2.0 table numbers (rev. 1.8 numbers its sections one higher: 6.x for 5.x): Table 14
(AuthenticateEV2First with key 0), Table 17 (WriteData of the NDEF file in CommMode.Full),
Table 18 (ChangeFileSettings with SDM), Table 25 (ChangeKey of key 2, old key zeros) and
Table 26 (ChangeKey of key 0, the session's own key). Tables 25 and 26 run in a session whose
keys the note gives directly (from its Table 23).
"""

from __future__ import annotations

import pytest

from bandlink.gateway.core.aes import ZERO_BLOCK, cbc_decrypt, cbc_encrypt
from bandlink.gateway.core.bands import sun
from bandlink.tools import ntag424 as n
from bandlink.tools.ntag424_emulator import Ntag424

h = bytes.fromhex
UID = h("04958CAA5C5E80")  # AN12196's UID


def _table14() -> n.Session:
    rnd_a = h("13C5DB8A5930439FC3DEF9A4C675360F")
    encrypted_rnd_b = h("A04C124213C186F22399D33AC2A30215")
    assert n.auth_first(0) == h("9071000002000000")
    answer, rnd_b = n.auth_answer(n.FACTORY_KEY, encrypted_rnd_b, rnd_a)
    assert rnd_b == h("B9E2FC789B64BF237CCCAA20EC7E6E48")
    assert answer == h(
        "90AF00002035C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D00"
    )
    last = h("3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663")
    return n.auth_result(n.FACTORY_KEY, rnd_a, rnd_b, last)


def test_authenticate_ev2_first_table_14() -> None:
    session = _table14()
    assert session.ti == h("9D00C4DF")
    assert session.enc_key == h("1309C877509E5A215007FF0ED19CA564")
    assert session.mac_key == h("4C6626F5E72EA694202139295C7A7FC7")
    assert session.counter == 0


def test_write_data_and_change_file_settings_tables_17_18() -> None:
    session = _table14()
    url = b"choose.url.com/ntag424?e=" + b"0" * 32 + b"&c=" + b"0" * 16
    ndef = h("0051D1014D5504") + url
    data = ndef + bytes(0x80 - len(ndef))
    command = session.full_command(n.WRITE_DATA, n.write_data_header(2, 0, 0x80), data)
    assert command == h(
        "908D00009F02000000800000421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343C"
        "FFC768BFE596C706BC00F2176781D4B0242642A0FF5A42C461AAF894D9A1284B8C76BCFA658ACD40"
        "555D362E08DB15CF421B51283F9064BCBE20E96CAE545B407C9D651A3315B27373772E5DA2367D20"
        "64AE054AF996C6F1F669170FA88CE8C4E3A4A7BBBEF0FD971FF532C3A802AF745660F2B4D1D9A849"
        "9661EBF300"
    )
    assert session.check_answer(h("FC222E5F7A542452")) == b""
    settings = n.FileSettings.decode(h("4000E0C1F121200000430000430000"))
    assert settings.sdm == n.Sdm(2, 1, 0x20, 0x43, 0x43, counter_access=1)
    assert settings.encode() == h("4000E0C1F121200000430000430000")
    command = session.full_command(n.CHANGE_FILE_SETTINGS, b"\x02", settings.encode())
    assert command == h("905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400")
    assert session.check_answer(h("57BFF87B1241E93D")) == b""
    assert session.counter == 2


def _table23_session(counter: int) -> n.Session:
    enc, mac = h("4CF3CB41A22583A61E89B158D252FC53"), h("5529860B2FC5FB6154B7F28361D30BF9")
    return n.Session(enc, mac, h("7614281A"), counter=counter)


def test_change_key_tables_25_26() -> None:
    session = _table23_session(counter=2)
    new = h("F3847D627727ED3BC9C4CC050489B966")
    assert n.crc32_nk(new) == h("789DFADC")
    data = n.change_key_data(2, new, 1, old=n.FACTORY_KEY)
    assert session.full_command(n.CHANGE_KEY, b"\x02", data) == h(
        "90C4000029022CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC7"
        "5D0CE20BCD1D06E600"
    )
    session.check_answer(h("203BB55D1089D587"))
    data = n.change_key_data(0, h("5004BF991F408672B1EF00F08F9E8647"), 1, old=None)
    assert session.full_command(n.CHANGE_KEY, b"\x00", data) == h(
        "90C400002900C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FD"
        "A6610234BDED643200"
    )


def test_a_changed_answer_does_not_verify() -> None:
    session = _table23_session(counter=2)
    with pytest.raises(n.SecureMessagingError):
        session.check_answer(h("203BB55D1089D588"))


# -- the emulated chip, APDU by APDU ----------------------------------------------------------


class Pcd:
    """The reader's side of a session with an emulated chip, for the tests below."""

    def __init__(self, chip: Ntag424) -> None:
        self.chip = chip

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        return n.split_response(self.chip.apdu(apdu))

    def authenticate(self, key: bytes = n.FACTORY_KEY, key_no: int = 0) -> n.Session | int:
        assert self.send(n.select_application())[1] == n.ISO_OK
        encrypted_rnd_b, status = self.send(n.auth_first(key_no))
        assert status == n.MORE
        rnd_a = bytes(range(16))
        answer, rnd_b = n.auth_answer(key, encrypted_rnd_b, rnd_a)
        data, status = self.send(answer)
        if status != n.OK:
            return status
        return n.auth_result(key, rnd_a, rnd_b, data)


def _chip(keys: list[bytes] | None = None) -> Ntag424:
    return Ntag424(UID) if keys is None else Ntag424(UID, keys=keys)


def test_the_chip_authenticates_its_key_only() -> None:
    chip = _chip(keys=[h("11" * 16)] + [n.FACTORY_KEY] * 4)
    assert Pcd(chip).authenticate() == n.AUTHENTICATION_ERROR
    assert isinstance(Pcd(chip).authenticate(h("11" * 16)), n.Session)
    assert isinstance(Pcd(chip).authenticate(key_no=1), n.Session)


def test_the_chip_wants_a_session_and_a_good_mac() -> None:
    chip = _chip()
    pcd = Pcd(chip)
    pcd.send(n.select_application())
    # ChangeKey without a session (its MAC made up): refused before anything else.
    forged = n.Session(bytes(16), bytes(16), bytes(4)).full_command(
        n.CHANGE_KEY, b"\x01", n.change_key_data(1, h("22" * 16), 1, old=n.FACTORY_KEY)
    )
    assert pcd.send(forged)[1] == n.AUTHENTICATION_ERROR
    session = pcd.authenticate()
    assert isinstance(session, n.Session)
    command = bytearray(session.full_command(n.CHANGE_KEY, b"\x01", h("00" * 21)))
    command[-2] ^= 1  # the MAC's last byte
    assert pcd.send(bytes(command))[1] == n.INTEGRITY_ERROR
    # The bad MAC ended the session: a good command of it is refused too.
    good = session.full_command(n.CHANGE_KEY, b"\x01", h("00" * 21))
    assert pcd.send(good)[1] == n.AUTHENTICATION_ERROR
    assert chip.keys[1] == n.FACTORY_KEY


def test_change_key_checks_the_crc_and_ends_the_session_for_key_0() -> None:
    chip = _chip()
    pcd = Pcd(chip)
    session = pcd.authenticate()
    assert isinstance(session, n.Session)
    wrong_old = n.change_key_data(1, h("22" * 16), 1, old=h("33" * 16))
    body, status = pcd.send(session.full_command(n.CHANGE_KEY, b"\x01", wrong_old))
    assert status == n.INTEGRITY_ERROR and chip.keys[1] == n.FACTORY_KEY
    session = pcd.authenticate()
    assert isinstance(session, n.Session)
    good = n.change_key_data(1, h("22" * 16), 7, old=n.FACTORY_KEY)
    body, status = pcd.send(session.full_command(n.CHANGE_KEY, b"\x01", good))
    session.check_answer(body)
    assert (chip.keys[1], chip.key_versions[1]) == (h("22" * 16), 7)
    own = n.change_key_data(0, h("44" * 16), 1, old=None)
    assert pcd.send(session.full_command(n.CHANGE_KEY, b"\x00", own)) == (b"", n.OK)
    assert chip.keys[0] == h("44" * 16)
    assert Pcd(chip).authenticate() == n.AUTHENTICATION_ERROR


def test_an_sdm_file_mirrors_a_fresh_sun_message_on_every_read() -> None:
    meta, file_key = h("55" * 16), h("66" * 16)
    url = b"x.example/b?picc_data=" + b"0" * 32 + b"&cmac=" + b"0" * 16
    record = h("D101") + bytes([len(url) + 1]) + b"U\x04" + url
    content = len(record).to_bytes(2, "big") + record
    picc_at = 7 + url.index(b"picc_data=") + 10
    mac_at = 7 + url.index(b"cmac=") + 5
    sdm = n.Sdm(1, 2, picc_at, mac_at, mac_at)
    chip = _chip(keys=[n.FACTORY_KEY, meta, file_key, n.FACTORY_KEY, n.FACTORY_KEY])
    chip.files[2][: len(content)] = content
    chip.settings[2] = n.FileSettings(n.PLAIN, n.FREE, 0, 0, 0, sdm=sdm)
    pcd = Pcd(chip)
    pcd.send(n.select_application())
    pcd.send(n.select_file(0xE104))
    counters = []
    for _ in range(3):
        data, status = pcd.send(n.read_binary())
        assert status == n.ISO_OK
        text = data[7 : 2 + len(record)].decode()
        parsed = sun.parse_url("https://" + text)
        assert parsed.picc is not None
        counters.append(sun.verify(meta, lambda _uid: file_key, parsed.picc, parsed.mac).counter)
    assert counters == [1, 2, 3]
    assert chip.files[2][picc_at : picc_at + 32] == b"0" * 32  # the file itself keeps zeros


def test_a_rnd_b_the_chip_did_not_send_fails() -> None:
    chip = _chip()
    pcd = Pcd(chip)
    pcd.send(n.select_application())
    encrypted_rnd_b, _ = pcd.send(n.auth_first(0))
    rnd_b = cbc_decrypt(n.FACTORY_KEY, ZERO_BLOCK, encrypted_rnd_b)
    wrong = cbc_encrypt(n.FACTORY_KEY, ZERO_BLOCK, bytes(16) + rnd_b)  # not rotated
    assert pcd.send(n.native(n.ADDITIONAL_FRAME, wrong))[1] == n.AUTHENTICATION_ERROR
