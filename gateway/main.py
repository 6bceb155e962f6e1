"""The composition root: settings in, a running gateway process out.

It builds the store (migrated, the venue loaded), the core, the metrics, the decision worker and
the MQTT adapter, wires them together, and tears them down in the reverse order: the adapter
stops taking frames, the worker answers what it already queued, the store closes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .adapters.mqtt import Bus
from .core.bands.keys import DEVELOPMENT_MASTER_KEY, BandKeys
from .core.entry import venue_day
from .core.handler import Core
from .core.limits import TokenBuckets
from .http.app import create_app
from .http.deps import Api
from .http.server import HttpServer
from .metrics import Metrics
from .settings import Settings
from .store import Store
from .worker import DecisionWorker, wall_ms

log = logging.getLogger("bandlink.gateway")


def venue_from(name: str) -> dict[str, Any]:
    """The venue named on the command line: "demo", or a JSON file of the same shape."""
    if name == "demo":
        from .venue import DEMO_VENUE

        return DEMO_VENUE
    loaded: dict[str, Any] = json.loads(Path(name).read_text())
    return loaded


class GatewayService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.db.startswith("sqlite:///"):
            Path(settings.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db)
        self.band_master = settings.band_master  # read once: it may come from a file
        self.metrics = Metrics()
        self.core = Core(
            settings.zone,
            closing=settings.closing_time,
            secret_key=settings.secret_key.get_secret_value().encode(),
            band_keys=BandKeys(self.band_master),
        )
        host, port = settings.broker_address
        password = settings.broker_password
        self.bus = Bus(
            self.core,
            self.metrics,
            host=host,
            port=port,
            gateway_id=settings.gateway_id,
            user=settings.broker_user,
            password=password.get_secret_value() if password else None,
            limits=TokenBuckets(settings.reader_rate, settings.reader_burst),
        )
        self.worker = DecisionWorker(
            self.core,
            self.store,
            self.bus.publish,
            self.metrics,
            max_batch=settings.max_batch,
            queue_size=settings.queue_size,
            time_sync_s=settings.time_sync_s,
            flood_log_s=settings.flood_log_s,
        )
        self.bus.worker = self.worker
        self.metrics.follow(self.store.readers_online, self.bus.gateways_up)
        self.http: HttpServer | None = None
        if settings.http_address is not None:
            api = Api(
                store=self.store,
                core=self.core,
                publish=self.bus.publish,
                clock=wall_ms,
                currency=settings.currency,
                charge_timeout_ms=int(settings.charge_timeout_s * 1000),
            )
            self.http = HttpServer(create_app(api), *settings.http_address)

    def start(self) -> None:
        self.store.migrate()
        if self.settings.venue:
            # "today" in a venue file: the date in the venue's zone, as decisions see it.
            today = venue_day(wall_ms(), self.settings.zone)
            venue = venue_from(self.settings.venue)
            self.store.load_venue(venue, today=today, currency=self.settings.currency)
        plain = self.store.plain_uid_bands()
        if plain:
            log.warning(
                "%d plain-UID band(s): their taps prove nothing, and a copied UID passes as "
                "them (docs/SECURITY.md)",
                plain,
            )
        if self.band_master == DEVELOPMENT_MASTER_KEY:
            log.warning("bands use the development master key: fine for a demo, not a venue")
        if self.settings.metrics_address:
            self.metrics.serve(*self.settings.metrics_address)
        self.worker.start()
        self.bus.start()
        if self.http is not None:
            self.http.start()

    def stop(self) -> None:
        """Take no new frames or requests, answer the queued ones, say offline, close the
        store."""
        if self.http is not None:
            self.http.stop()
        self.bus.stop_receiving()
        self.worker.stop()
        self.bus.stop()
        self.store.close()
