"""Simulator of the site's control-system HTTP API: the pump room's constant-temperature control and the
electrical control system, as a JSON-over-HTTP service on ``127.0.0.1:<free port>``.

Endpoints (all need the auth header, ``Authorization: Bearer <token>`` by default):
- ``GET /api/v1/pump-room``: ``ts`` (ms), ``energy_wh`` (heat-meter counter, int), ``power_w``,
  ``flow_m3h``, ``supply_temp_c``, ``return_temp_c``, ``pumps_running``;
- ``GET /api/v1/electrical``: ``ts``, ``energy_wh`` (site import counter), ``power_w``, ``voltage_v``,
  ``feeders`` {``core_heating_wh``, ``pipe_heating_wh``, ``storage_tank_wh``};
- ``POST /_sim/faults`` (JSON ``{"fail": n, "slow": n, "slow_s": x, "bad_json": n}``): the next n answers
  are HTTP 500, slow, or broken JSON (also settable in-process through ``ControlApiSim.faults``).

Invariants: values are pure functions of the simulator's clock (a heating-season day: more heat at night),
so counters only ever rise and two reads at the same instant agree; energy counters are exact integers in
Wh; temperatures and flow are decimals as a real control system sends them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

DAY_S = 86_400.0


@dataclass(slots=True)
class Faults:
    fail: int = 0
    """Answer the next n requests with HTTP 500."""
    slow: int = 0
    """Delay the next n answers by ``slow_s``."""
    slow_s: float = 5.0
    bad_json: int = 0
    """Send a truncated JSON body for the next n requests."""


class ControlApiSim:
    def __init__(
        self,
        token: str = "sim-token",
        *,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        clock: Callable[[], float] = time.time,
        start_energy_wh: int = 12_345_678,
        rated_heat_w: int = 600_000,
        rated_elec_w: int = 900_000,
        counters_since: float | None = None,
    ) -> None:
        self.token = token
        self.auth_header = auth_header
        self.expected = f"{auth_scheme} {token}".strip() if auth_scheme else token
        self.clock = clock
        self.t0 = clock() if counters_since is None else min(counters_since, clock())
        """Clock time (s) at which the counters held their start values: give the same one to a restarted
        simulator and its counters continue instead of starting over."""
        self.start_energy_wh = start_energy_wh
        self.rated_heat_w = rated_heat_w
        self.rated_elec_w = rated_elec_w
        self.faults = Faults()
        self.requests = 0
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- model -------------------------------------------------------------------------------------
    def _load(self, t: float) -> float:
        """0.35..0.95 of rated: highest in the small hours (cheap night power charges the tank)."""
        return 0.65 + 0.3 * math.cos(2 * math.pi * t / DAY_S - 2 * math.pi * 3 / 24)

    def _energy(self, t: float, rated_w: int) -> int:
        """Exact integral of rated × load from t0 to t, in Wh (closed form, so it only rises)."""
        w = 2 * math.pi / DAY_S
        phase = -2 * math.pi * 3 / 24
        ws = rated_w * (
            0.65 * (t - self.t0) + 0.3 * (math.sin(w * t + phase) - math.sin(w * self.t0 + phase)) / w
        )
        return max(0, int(ws // 3600))

    def pump_room(self) -> dict[str, Any]:
        t = self.clock()
        load = self._load(t)
        power = self.rated_heat_w * load
        dt_k = 10.0
        flow_m3h = power / (1000 * 4.186 * dt_k / 3.6) / 1000  # P = ρ·cp·Q·ΔT
        supply = 45.0 + 10.0 * load
        return {
            "ts": int(t * 1000),
            "energy_wh": self.start_energy_wh + self._energy(t, self.rated_heat_w),
            "power_w": round(power, 1),
            "flow_m3h": round(flow_m3h, 3),
            "supply_temp_c": round(supply, 2),
            "return_temp_c": round(supply - dt_k, 2),
            "pumps_running": 2,
        }

    def electrical(self) -> dict[str, Any]:
        t = self.clock()
        load = self._load(t)
        total = self._energy(t, self.rated_elec_w)
        core = total * 6 // 10
        pipe = total * 25 // 100
        return {
            "ts": int(t * 1000),
            "energy_wh": 98_765_432 + total,
            "power_w": round(self.rated_elec_w * load, 1),
            "voltage_v": round(230.0 + 2.0 * math.sin(t / 60), 1),
            "feeders": {
                "core_heating_wh": 50_000_000 + core,
                "pipe_heating_wh": 20_000_000 + pipe,
                "storage_tank_wh": 10_000_000 + (total - core - pipe),
            },
        }

    # --- HTTP --------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/pump-room", self._serve(self.pump_room))
        app.router.add_get("/api/v1/electrical", self._serve(self.electrical))
        app.router.add_post("/_sim/faults", self._set_faults)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get(self.auth_header) == self.expected

    def _serve(self, producer: Callable[[], dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            if not self._authorized(request):
                self.refused += 1
                return web.json_response({"error": "unauthorized"}, status=401)
            f = self.faults
            if f.fail > 0:
                f.fail -= 1
                return web.json_response({"error": "internal error (simulated)"}, status=500)
            if f.slow > 0:
                f.slow -= 1
                await asyncio.sleep(f.slow_s)
            body = json.dumps(producer())
            if f.bad_json > 0:
                f.bad_json -= 1
                body = body[: len(body) // 2]
            return web.Response(text=body, content_type="application/json")

        return handler

    async def _set_faults(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        doc = await request.json()
        for k in ("fail", "slow", "bad_json"):
            if k in doc:
                setattr(self.faults, k, int(doc[k]))
        if "slow_s" in doc:
            self.faults.slow_s = float(doc["slow_s"])
        return web.json_response({"ok": True})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on ``host:port`` (0 = a free port); returns the port."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    def url(self, path: str = "/api/v1/pump-room") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve_forever(host: str, port: int, token: str) -> None:
    sim = ControlApiSim(token)
    real = await sim.start(host, port)
    print(
        json.dumps(
            {
                "control_api": f"http://{host}:{real}",
                "pump_room": f"http://{host}:{real}/api/v1/pump-room",
                "electrical": f"http://{host}:{real}/api/v1/electrical",
                "auth": f"{sim.auth_header}: Bearer <token>",
            }
        ),
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
