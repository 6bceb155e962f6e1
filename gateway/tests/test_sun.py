"""SUN verification, LRP and AN10922 against the published vectors, and against the band's own
side (``sun.seal``) for every mode, UID, counter and file size: whatever a band makes verifies,
and any byte changed on the way, or any other key, does not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.gateway.core.aes import cmac, pad_block
from bandlink.gateway.core.bands import sun
from bandlink.gateway.core.bands.keys import BandKeys, diversify
from bandlink.gateway.core.bands.lrp import Lrp
from bandlink.protocol.tests.vectors import load_vectors

H = bytes.fromhex
SUN_VECTORS: list[dict[str, Any]] = load_vectors("ntag424_sun_third_party.json")["vectors"]
LRP_VECTORS = {v["id"]: v for v in load_vectors("an12304_lrp.json")["vectors"]}
ZERO_KEY = bytes(16)


def _verify_vector(v: dict[str, Any]) -> sun.SunReading:
    mac_input = v["mac_input_ascii"].encode() if "mac_input_ascii" in v else None
    if "picc_enc_data" not in v:  # a plain mirror: UID and counter in clear
        counter = int(v["ctr_url_text"], 16)
        key = H(v["k_sdm_file_read"])
        return sun.verify_plain(key, H(v["uid"]), counter, H(v["sdmmac"]), mac_input=b"")
    enc = H(v["enc_file_data"]) if "enc_file_data" in v else None
    return sun.verify(
        H(v["k_sdm_meta_read"]),
        lambda _uid: H(v["k_sdm_file_read"]),
        H(v["picc_enc_data"]),
        H(v["sdmmac"]),
        enc=enc,
        mac_input=mac_input,
    )


@pytest.mark.parametrize("vector", SUN_VECTORS, ids=[v["id"] for v in SUN_VECTORS])
def test_third_party_sun_vectors(vector: dict[str, Any]) -> None:
    if vector["expect"] == "reject":
        with pytest.raises(sun.SunError) as refused:
            _verify_vector(vector)
        assert refused.value.reason == "bad_mac"
        return
    reading = _verify_vector(vector)
    assert reading.uid == H(vector["uid"])
    assert reading.counter == vector["sdm_read_ctr"]
    assert reading.mode == vector["mode"].lower()
    if "file_data_plain_ascii" in vector:
        assert reading.file_data == vector["file_data_plain_ascii"].encode()


def test_an12196_example_url_with_factory_keys() -> None:
    """The URL printed in AN12196 (section 3.4, factory keys, no file data)."""
    url = "https://sdm.nxp.com/?picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086"
    parsed = sun.parse_url(url)
    assert parsed.picc is not None
    reading = sun.verify(ZERO_KEY, lambda _uid: ZERO_KEY, parsed.picc, parsed.mac)
    assert (reading.uid, reading.counter) == (H("04DE5F1EACC040"), 61)


def test_lrp_primitives_match_an12304() -> None:
    v = LRP_VECTORS
    lrp = Lrp(H(v["lrp-plaintexts"]["key"]))
    assert lrp.plaintexts[0] == H(v["lrp-plaintexts"]["p0"])
    assert lrp.plaintexts[15] == H(v["lrp-plaintexts"]["p15"])
    assert Lrp(H(v["lrp-updated-keys"]["key"])).updated_key == H(v["lrp-updated-keys"]["uk0"])
    assert Lrp(H(v["lrp-updated-keys"]["key"]), 2).updated_key == H(v["lrp-updated-keys"]["uk2"])
    for name in ("lrp-eval-1", "lrp-eval-2"):
        e = v[name]
        out = Lrp(H(e["key"]), e["updated_key_index"]).eval(H(e["x"]), final=e["final"])
        assert out == H(e["out"]), name
    e = v["lrp-lricb-enc"]
    plain = pad_block(H(e["plaintext"]), 32)  # the vector pads: 0x80, then zeros
    lricb = Lrp(H(e["key"]), e["updated_key_index"])
    assert lricb.encrypt(H(e["counter"]), plain) == H(e["ciphertext"])
    assert lricb.decrypt(H(e["counter"]), H(e["ciphertext"])) == plain
    for name in ("lrp-cmac-1", "lrp-cmac-2", "lrp-cmac-3"):
        e = v[name]
        assert Lrp(H(e["key"])).cmac(H(e["message"])) == H(e["cmac"]), name


def test_an10922_published_diversification() -> None:
    """AN10922 section 2.2.1: UID 04782E21801D80, AID 3042F5, system identifier "NXP Abu"."""
    master = H("00112233445566778899AABBCCDDEEFF")
    data = H("04782E21801D80") + H("3042F5") + b"NXP Abu"
    assert diversify(master, data) == H("A8DD63A3B89D54B37CA802473FDA9175")


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=31))
def test_diversification_is_cmac_where_their_padding_agrees(master: bytes, data: bytes) -> None:
    """With 16 to 31 bytes of input (17 to 32 with the constant) AN10922's two-block padding
    is CMAC's own."""
    assert diversify(master, data) == cmac(master, b"\x01" + data)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=1, max_size=15))
def test_short_inputs_are_padded_to_two_blocks_not_one(master: bytes, data: bytes) -> None:
    assert diversify(master, data) != cmac(master, b"\x01" + data)
    assert diversify(master, data) != diversify(master, data + b"\x80")


def test_band_keys_differ_per_band_and_per_master() -> None:
    keys = BandKeys(bytes(range(16)))
    one, two = H("04a1b2c3d4e5f6"), H("04a1b2c3d4e5f7")
    assert keys.file_read(one) != keys.file_read(two)
    assert keys.file_read(one) != BandKeys(bytes(range(1, 17))).file_read(one)
    assert keys.meta_read not in (keys.file_read(one), keys.band_key(0, one))


uids = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
file_data = st.none() | st.sampled_from([16, 32, 48]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)
keys16 = st.binary(min_size=16, max_size=16)


@given(st.sampled_from([sun.AES, sun.LRP]), keys16, keys16, uids, st.integers(0, sun.COUNTER_MAX))
def test_what_a_band_seals_verifies(
    mode: str, meta: bytes, file_key: bytes, uid: bytes, counter: int
) -> None:
    picc, enc, mac = sun.seal(mode, meta, file_key, uid, counter)
    reading = sun.verify(meta, lambda u: file_key if u == uid else b"x" * 16, picc, mac, enc=enc)
    assert (reading.uid, reading.counter, reading.mode) == (uid, counter, mode)


@given(st.sampled_from([sun.AES, sun.LRP]), keys16, uids, file_data, st.data())
def test_any_changed_byte_or_other_key_is_refused(
    mode: str, key: bytes, uid: bytes, data: bytes | None, draw: st.DataObject
) -> None:
    counter = draw.draw(st.integers(0, sun.COUNTER_MAX))
    picc, enc, mac = sun.seal(mode, key, key, uid, counter, file_data=data)
    reading = sun.verify(key, lambda _u: key, picc, mac, enc=enc)
    assert reading.file_data == data
    parts = {"picc": picc, "mac": mac} | ({"enc": enc} if enc else {})
    name = draw.draw(st.sampled_from(sorted(parts)))
    index = draw.draw(st.integers(0, len(parts[name]) - 1))
    flip = draw.draw(st.integers(1, 255))
    changed = bytearray(parts[name])
    changed[index] ^= flip
    altered = parts | {name: bytes(changed)}
    with pytest.raises(sun.SunError):
        sun.verify(key, lambda _u: key, altered["picc"], altered["mac"], enc=altered.get("enc"))
    other = bytes(b ^ 1 for b in key)
    with pytest.raises(sun.SunError):
        sun.verify(key, lambda _u: other, picc, mac, enc=enc)


@pytest.mark.parametrize(
    ("url", "picc", "enc", "mac_input"),
    [
        ("https://x/b?picc_data=" + "AB" * 16 + "&cmac=" + "CD" * 8, "AB" * 16, None, b""),
        ("https://x/b?e=" + "ab" * 24 + "&cmac=" + "cd" * 8, "AB" * 24, None, b""),
        (
            "https://x/b?picc_data=" + "AB" * 16 + "&enc=" + "EF" * 16 + "&cmac=" + "CD" * 8,
            "AB" * 16,
            "EF" * 16,
            ("EF" * 16 + "&cmac=").encode(),
        ),
    ],
)
def test_sun_urls_of_each_shape(url: str, picc: str, enc: str | None, mac_input: bytes) -> None:
    parsed = sun.parse_url(url)
    assert parsed.picc == H(picc) and parsed.mac == H("CD" * 8)
    assert parsed.enc == (H(enc) if enc else None)
    assert parsed.mac_input == mac_input


@pytest.mark.parametrize(
    "url",
    [
        "https://x/b",
        "https://x/b?picc_data=" + "AB" * 16,  # no cmac
        "https://x/b?picc_data=" + "AB" * 16 + "&cmac=" + "CD" * 7,  # short cmac
        "https://x/b?picc_data=ABC&cmac=" + "CD" * 8,  # odd digits
        "https://x/b?uid=04A1B2C3D4E5F6&cmac=" + "CD" * 8,  # plain mirror without ctr
    ],
)
def test_urls_that_are_not_sun_are_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError, match=r"hex digits|picc_data|cmac"):
        sun.parse_url(url)


def test_a_tap_without_file_data_is_maced_over_nothing() -> None:
    assert sun.wire_mac_input(None) == b""
    assert sun.wire_mac_input(H("0a" * 16)) == b"0A" * 16 + b"&cmac="
