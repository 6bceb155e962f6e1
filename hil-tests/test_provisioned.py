"""The venue as the demo runs it: every identity made by ``bandlink provision``'s code before
the broker starts, each gateway logging in from its settings file and each reader from its
config.json, on the locked broker."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from bandlink.gateway.venue import DEMO_BANDS
from bandlink.tools.rig import venue_rig


def test_provisioned_readers_and_gateways_log_in_and_decide(tmp_path: Path) -> None:
    with venue_rig(tmp_path / "venue", say=lambda _: None) as rig:
        assert rig.readers["gate-1"].tap(DEMO_BANDS["Ada"]).pattern == "green"
        assert rig.readers["gate-2"].tap(DEMO_BANDS["Ada"]).pattern == "green"
        provisioned = tmp_path / "venue" / "provisioned"
        config = json.loads((provisioned / "gate-1.json").read_text())
        assert config["broker"]["user"] == "gate-1"
        for path in provisioned.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for member in rig.gateways.members:
            assert "BANDLINK_BROKER_PASSWORD" not in " ".join(member.command)
            assert "connected to mqtt://" in member.log()
