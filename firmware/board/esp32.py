"""ESP32 reader: PN532 over SPI or I2C, or MFRC522 over SPI; green/red LEDs, PWM buzzer, Wi-Fi.

Site settings (config.json), every pin optional except the NFC bus:

    {"board": "esp32",
     "nfc": {"bus": "spi", "sck": 18, "mosi": 23, "miso": 19, "cs": 5, "irq": 4}
         or {"bus": "i2c", "scl": 22, "sda": 21, "irq": 4},
         or {"chip": "rc522", "bus": "spi", "sck": 18, "mosi": 23, "miso": 19, "cs": 5},
         (optional: "chip" "pn532" (the default) or "rc522", "id" bus number,
          "baudrate"/"freq", "addr", "absent_polls"; the RC522 is polled, its IRQ unused)
     "led_green": 2, "led_red": 4, "led_status": 16, "led_active_low": false, "buzzer": 5,
     "wifi": {"ssid": "...", "password": "..."},
     "keypad": {"rows": [13, 12, 14, 27], "cols": [26, 25, 33]}}  (pos: a 4x3 matrix keypad)

Tap-to-light budget (DESIGN.md, firmware): Wi-Fi power save is turned off, because modem sleep
costs 100-300 ms per round trip; the front end is polled without sleeps between ready checks
(the PN532's IRQ line when wired); beeps run in their own task so ``show`` returns at once.

``read_ndef(buf)`` (board/__init__.py has the contract) reads the NDEF file of the band just
reported with ISO-DEP APDUs (type4.py) through the front end (pn532.py, rc522.py): its length,
0 for a band without one (an NTAG21x, a status word other than 9000), -1 when the band left
mid-read. After a torn read the band's visit is forgotten, so a band still held (it only slipped
to the field's edge) is reported again at the next poll instead of waiting for the guest to
lift it.
"""

import asyncio
import errno
import time

import network
from feedback import GREEN, OFFLINE_GREEN, OFFLINE_RED, RED, RETRY
from machine import I2C, PWM, SPI, Pin
from micropython import const
from presence import ABSENT_POLLS, TagPresence
from type4 import NfcError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from type4 import Frontend

_WIFI_ATTEMPTS = const(3)
_WIFI_CONNECT_MS = const(15_000)  # per attempt: association, WPA2 handshake and DHCP
_WIFI_CHECK_MS = const(100)
_WIFI_BACKOFF_MS = const(2_000)
_NFC_ATTEMPTS = const(3)
_POLL_GAP_MS = const(2)  # between polls: lets other tasks run; a poll itself is a few ms
_NFC_ERROR_MS = const(20)  # pause after a failed poll (noise, chip reset)
_NFC_RESET_ERRORS = const(10)  # consecutive failed polls before configuring the chip again
_BEEP_DUTY = const(32_768)  # 50 %: loudest square wave
_KEY_SCAN_MS = const(10)  # between keypad scans; a key bounces for a few ms
_KEY_SETTLE_US = const(5)  # after driving a row low, before its columns are read
# The keys of a 4x3 keypad, row by row (the usual telephone layout).
_KEYPAD = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#")

# Beeps per feedback pattern: frequency (Hz, 0 = silence) and duration (ms), alternating.
_BEEPS: tuple[tuple[int, ...], ...] = (
    (),  # IDLE: silent
    (2_700, 80),  # GREEN: one short high beep
    (700, 150, 0, 80, 700, 150),  # RED: two low beeps
    (2_000, 60, 0, 60, 2_000, 60, 0, 60, 2_000, 60),  # RETRY: three quick beeps
    (1_500, 40),  # PIN: one short prompt
    (2_700, 80, 0, 300, 1_200, 300),  # OFFLINE_GREEN: the green beep, then a long low one
    (700, 150, 0, 80, 700, 150, 0, 300, 1_200, 300),  # OFFLINE_RED: likewise after the red
)


class Board:
    def __init__(self, config: dict) -> None:
        self._config = config
        on = 0 if config.get("led_active_low") else 1
        self._on = on
        self._green = _out_pin(config.get("led_green"), 1 - on)
        self._red = _out_pin(config.get("led_red"), 1 - on)
        self._status = _out_pin(config.get("led_status"), 1 - on)
        buzzer = config.get("buzzer")
        self._pwm = None if buzzer is None else PWM(Pin(buzzer), freq=2_000, duty_u16=0)
        self._beep = 0
        self._beep_due = asyncio.Event()
        self._beeper_task: asyncio.Task | None = None
        nfc = config["nfc"]
        self._cs: Pin | None = None
        self._nfc = self._open_nfc(nfc)
        self._presence = TagPresence(nfc.get("absent_polls", ABSENT_POLLS))
        self.nfc_errors = 0  # failed polls since boot (heartbeat material)
        self.nfc_version = b""
        self._wlan: network.WLAN | None = None
        keypad = config.get("keypad")
        self._rows: list[Pin] = []
        self._cols: list[Pin] = []
        if keypad is not None:
            self._rows = [Pin(n, Pin.OUT, value=1) for n in keypad["rows"]]
            self._cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in keypad["cols"]]
        self._key_down = -1  # the key held at the last scan, or -1: a press is reported once

    async def start(self) -> None:
        await self._start_nfc()
        await self._connect_wifi()
        if self._pwm is not None and self._beeper_task is None:
            self._beeper_task = asyncio.create_task(self._beeper())

    def network_ok(self) -> bool:
        return self._wlan is not None and self._wlan.isconnected()

    async def wait_tag(self, uid: bytearray) -> int:
        nfc = self._nfc
        errors = 0
        while True:
            try:
                n = await nfc.poll_uid(uid)
            except (NfcError, OSError):  # a bad frame or a NACK: noise, brown-out, reset
                self.nfc_errors += 1
                errors += 1
                if errors >= _NFC_RESET_ERRORS:
                    errors = 0
                    self._configure_nfc_quietly()
                await asyncio.sleep_ms(_NFC_ERROR_MS)
                continue
            errors = 0
            if self._presence.update(uid, n):
                return n
            await asyncio.sleep_ms(_POLL_GAP_MS)

    async def read_ndef(self, buf: bytearray) -> int:
        n = await self._nfc.read_ndef(buf)
        if n < 0:
            self.nfc_errors += 1
            self._presence.forget()
        return n

    async def wait_key(self, timeout_ms: int) -> str | None:
        # Without a keypad ("keypad" absent from config.json) there is nothing to wait for: a
        # pos reader built so cannot take PINs, and the role says so to the guest.
        if not self._rows:
            return None
        waited = 0
        while True:
            key = self._scan()
            if key != self._key_down:
                self._key_down = key
                if key >= 0:
                    return _KEYPAD[key]
            if waited >= timeout_ms:
                return None
            await asyncio.sleep_ms(_KEY_SCAN_MS)
            waited += _KEY_SCAN_MS

    def _scan(self) -> int:
        """The key held now (index into _KEYPAD), or -1: one row low at a time, a low column
        is a closed switch. Two keys at once read as the first."""
        cols = self._cols
        for r, row in enumerate(self._rows):
            row.value(0)
            time.sleep_us(_KEY_SETTLE_US)
            for c, col in enumerate(cols):
                if not col.value():
                    row.value(1)
                    return r * len(cols) + c
            row.value(1)
        return -1

    def show(self, pattern: int, text: str) -> None:
        # No display on this board yet: ``text`` is for boards that have one.
        both = pattern == RETRY  # two LEDs together read as amber
        self._light(self._green, both or pattern in (GREEN, OFFLINE_GREEN))
        self._light(self._red, both or pattern in (RED, OFFLINE_RED))
        if self._pwm is not None and 0 < pattern < len(_BEEPS):
            self._beep = pattern
            self._beep_due.set()  # the beeper task plays it; a newer pattern cuts it short

    def link(self, up: bool) -> None:
        self._light(self._status, up)

    def heap(self, allocated: int, free: int) -> None:
        pass  # no console on a board in the field; free heap goes out in the Status heartbeat

    # --- NFC ---

    def _open_nfc(self, nfc: dict) -> "Frontend":
        """The front end config.json names; only its driver module is imported."""
        chip = nfc.get("chip", "pn532")
        kind = nfc.get("bus", "spi")
        if chip == "rc522":
            if kind != "spi":
                raise ValueError("nfc bus of an rc522 must be spi, not %r" % (kind,))
            from rc522 import RC522

            # MSB first, mode 0; the chip takes up to 10 MHz.
            return RC522(self._spi(nfc, SPI.MSB, 4_000_000), self._cs_pin(nfc))
        if chip != "pn532":
            raise ValueError("nfc chip must be pn532 or rc522, not %r" % (chip,))
        from pn532 import PN532, PN532I2C, PN532SPI

        irq = None if nfc.get("irq") is None else Pin(nfc["irq"], Pin.IN, Pin.PULL_UP)
        if kind == "spi":
            # The PN532 is LSB first (up to 5 MHz); the ESP32's SPI peripheral does the bit order.
            return PN532(PN532SPI(self._spi(nfc, SPI.LSB, 1_000_000), self._cs_pin(nfc), irq))
        if kind == "i2c":
            i2c = I2C(
                nfc.get("id", 0),
                scl=Pin(nfc["scl"]),
                sda=Pin(nfc["sda"]),
                freq=nfc.get("freq", 400_000),  # the PN532's maximum
            )
            return PN532(PN532I2C(i2c, nfc.get("addr", 0x24), irq))
        raise ValueError("nfc bus must be spi or i2c, not %r" % (kind,))

    def _spi(self, nfc: dict, firstbit: int, baudrate: int) -> SPI:
        return SPI(
            nfc.get("id", 1),
            baudrate=nfc.get("baudrate", baudrate),
            polarity=0,
            phase=0,
            firstbit=firstbit,
            sck=Pin(nfc["sck"]),
            mosi=Pin(nfc["mosi"]),
            miso=Pin(nfc["miso"]),
        )

    def _cs_pin(self, nfc: dict) -> Pin:
        self._cs = Pin(nfc["cs"], Pin.OUT, value=1)
        return self._cs

    async def _start_nfc(self) -> None:
        if self._cs is not None:  # SPI: a falling NSS wakes a PN532 from power-down
            self._cs.value(0)
            await asyncio.sleep_ms(2)
            self._cs.value(1)
        problem: Exception = OSError(errno.ENODEV)
        for _ in range(_NFC_ATTEMPTS):  # on I2C the first frames may be NACKed while it wakes
            try:
                self.nfc_version = self._nfc.version()
                self._nfc.start()
                return
            except (NfcError, OSError) as exc:
                problem = exc
                await asyncio.sleep_ms(10)
        print("nfc: not answering:", repr(problem))
        raise OSError(errno.ENODEV)

    def _configure_nfc_quietly(self) -> None:
        try:
            self._nfc.start()
        except (NfcError, OSError):
            pass  # counted in nfc_errors by the failing polls; retried after the next run

    # --- Wi-Fi ---

    async def _connect_wifi(self) -> None:
        wifi = self._config["wifi"]
        wlan = network.WLAN(network.STA_IF)
        self._wlan = wlan
        wlan.active(True)
        # ESP-IDF's default modem sleep wakes the radio only at beacons: 100-300 ms per tap.
        wlan.config(pm=network.WLAN.PM_NONE)
        for attempt in range(_WIFI_ATTEMPTS):
            if not wlan.isconnected():
                wlan.connect(wifi["ssid"], wifi.get("password"))
            if await _associated(wlan):
                self.link(True)
                return
            wlan.disconnect()
            await asyncio.sleep_ms(_WIFI_BACKOFF_MS * (attempt + 1))
        raise OSError(errno.ETIMEDOUT)

    # --- lights and sound ---

    def _light(self, pin: Pin | None, lit: bool) -> None:
        if pin is not None:
            pin.value(self._on if lit else 1 - self._on)

    async def _beeper(self) -> None:
        pwm = self._pwm
        if pwm is None:
            return
        due = self._beep_due
        while True:
            await due.wait()
            due.clear()
            steps = _BEEPS[self._beep]
            for i in range(0, len(steps), 2):
                if due.is_set():
                    break  # a newer pattern arrived: play that one instead
                if steps[i]:
                    pwm.freq(steps[i])
                    pwm.duty_u16(_BEEP_DUTY)
                else:
                    pwm.duty_u16(0)
                await asyncio.sleep_ms(steps[i + 1])
            pwm.duty_u16(0)


def _out_pin(number: int | None, off: int) -> Pin | None:
    return None if number is None else Pin(number, Pin.OUT, value=off)


async def _associated(wlan: network.WLAN) -> bool:
    waited = 0
    while not wlan.isconnected():
        if waited >= _WIFI_CONNECT_MS:
            return False
        await asyncio.sleep_ms(_WIFI_CHECK_MS)
        waited += _WIFI_CHECK_MS
    return True
