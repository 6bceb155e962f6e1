"""What the guest sees and hears after a tap: the patterns a role passes to ``Board.show``.

Plain ints (``const``), so a role can keep them in a tuple or compare them without allocating;
the board decides how each looks on its hardware (LEDs, buzzer, display) and skips what it lacks.
These names are exported, so they carry no leading underscore (an underscored const is folded
away at compile time and cannot be imported).
"""

from micropython import const

# Reader waiting for a band: LEDs off (or the idle ring), buzzer silent, display shows the prompt.
IDLE = const(0)
# Accepted (gate opens, payment approved, photo linked): green light, one short high beep.
GREEN = const(1)
# Refused (no entry, declined, blocked band): red light, two low beeps.
RED = const(2)
# Read failed or the band left too soon: amber (red and green) light, three quick beeps;
# the guest taps again.
RETRY = const(3)
# Asks the guest to type their PIN on the keypad (pos): the prompt stays until the PIN is in.
# The same number as the wire's PIN pattern.
PIN = const(4)
# Decided by the reader alone (no gateway answered): the same light, and a sound staff learn to
# notice, so they watch a gate that runs on its band list. Reader-local: never on the wire.
OFFLINE_GREEN = const(5)
OFFLINE_RED = const(6)
