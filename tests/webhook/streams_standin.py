"""A stand-in for the Moralis Streams REST API on 127.0.0.1, for `syndicate moralis sync`.

It speaks only what Moralis documents (docs.moralis.com, Streams API reference): the paths
`GET|PUT /streams/evm`, `GET|POST /streams/evm/{id}`, `GET|POST /streams/evm/{id}/address`, the
`x-api-key` header (401 without the right one), `limit`/`cursor` paging with `{"result",
"cursor", "total"}`, errors as `{"message": …}` (400 bad body, 404 unknown stream), 429 with
Retry-After when addresses are added faster than its rate limit, and the test webhook it POSTs
(signed with the Streams secret) to webhookUrl on every create or update, refusing the change
unless that gets a 2xx.  Anything else is a 404 or a 400: a client relying on more fails here."""
from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid

import aiohttp
from aiohttp import web

from moralishelp import payload, sign

STREAM_KEYS = {"webhookUrl", "description", "tag", "topic0", "allAddresses", "includeNativeTxs",
               "includeContractLogs", "includeInternalTxs", "includeAllTxLogs",
               "getNativeBalances", "abi", "advancedOptions", "chainIds", "demo", "triggers"}
_ADDR = re.compile(r"^0x[0-9a-fA-F]{40}$")


class StreamsStandIn:
    def __init__(self, api_key: str, secret: str, *, page_size: int = 2,
                 address_calls: int = 1, window_s: float = 1.5):
        self.api_key, self.secret = api_key, secret
        self.page_size, self.address_calls, self.window_s = page_size, address_calls, window_s
        self.streams: dict[str, dict] = {}
        self.addresses: dict[str, list[str]] = {}
        self.calls: list[tuple[str, str, int]] = []       # (method, path, status)
        self.keys_seen: set[str] = set()
        self._address_times: list[float] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    # -- life --
    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self):
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/streams/evm", self.list_streams)
        app.router.add_put("/streams/evm", self.create)
        app.router.add_get("/streams/evm/{id}", self.get)
        app.router.add_post("/streams/evm/{id}", self.update)
        app.router.add_get("/streams/evm/{id}/address", self.list_addresses)
        app.router.add_post("/streams/evm/{id}/address", self.add_address)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    @web.middleware
    async def _record(self, request, handler):
        key = request.headers.get("x-api-key")
        if key:
            self.keys_seen.add(key)
        if key != self.api_key:
            resp = web.json_response({"message": "Unauthorized"}, status=401)
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as e:
                resp = web.json_response({"message": e.reason}, status=e.status)
        self.calls.append((request.method, request.path, resp.status))
        return resp

    # -- helpers --
    @staticmethod
    def _error(status: int, message: str):
        return web.json_response({"message": message}, status=status)

    def _page(self, request, rows: list):
        try:
            limit = int(request.query["limit"])
        except (KeyError, ValueError):
            return self._error(400, "limit is required")
        start = int(request.query.get("cursor") or 0)
        n = min(limit, self.page_size)
        doc = {"result": rows[start:start + n], "total": len(rows)}
        if start + n < len(rows):
            doc["cursor"] = str(start + n)
        return web.json_response(doc)

    def _stream(self, request) -> dict:
        s = self.streams.get(request.match_info["id"])
        if s is None:
            raise web.HTTPNotFound(reason="Stream not found")
        return s

    async def _body(self, request, full: bool) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(reason="body is not JSON")
        if not isinstance(body, dict) or set(body) - STREAM_KEYS:
            raise web.HTTPBadRequest(reason=f"unknown fields {sorted(set(body) - STREAM_KEYS)}")
        need = ("webhookUrl", "description", "tag", "chainIds") if full else ()
        for k in need:
            if not body.get(k):
                raise web.HTTPBadRequest(reason=f"{k} is required")
        if "chainIds" in body and not all(re.match(r"^0x[0-9a-f]+$", c) for c in body["chainIds"]):
            raise web.HTTPBadRequest(reason="chainIds must be hex strings")
        if full and not any(body.get(k) for k in ("includeContractLogs", "includeNativeTxs",
                                                  "includeInternalTxs")):
            raise web.HTTPBadRequest(reason="one of includeContractLogs, includeNativeTxs, "
                                            "includeInternalTxs must be true")
        if body.get("topic0") and not body.get("abi"):
            raise web.HTTPBadRequest(reason="abi is required with topic0")
        return body

    async def _test_webhook(self, url: str) -> bool:
        body = payload("00")
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(url, data=body, headers={
                        "Content-Type": "application/json",
                        "x-signature": sign(body, self.secret)}) as r:
                    return 200 <= r.status < 300
        except aiohttp.ClientError:
            return False

    # -- endpoints --
    async def list_streams(self, request):
        return self._page(request, list(self.streams.values()))

    async def get(self, request):
        return web.json_response(self._stream(request))

    async def create(self, request):
        body = await self._body(request, full=True)
        if not await self._test_webhook(body["webhookUrl"]):
            return self._error(400, "Could not POST to webhook URL")
        sid = str(uuid.uuid4())
        self.streams[sid] = {**body, "id": sid, "status": "active", "statusMessage": ""}
        self.addresses[sid] = []
        return web.json_response(self.streams[sid])

    async def update(self, request):
        s = self._stream(request)
        body = await self._body(request, full=False)
        if not await self._test_webhook(body.get("webhookUrl", s["webhookUrl"])):
            return self._error(400, "Could not POST to webhook URL")
        s.update(body)
        return web.json_response(s)

    async def list_addresses(self, request):
        s = self._stream(request)
        return self._page(request, [{"address": a} for a in self.addresses[s["id"]]])

    async def add_address(self, request):
        s = self._stream(request)
        now = time.monotonic()
        self._address_times = [t for t in self._address_times if now - t < self.window_s]
        if len(self._address_times) >= self.address_calls:
            wait = self.window_s - (now - self._address_times[0])
            return web.json_response({"message": "Too many requests"}, status=429,
                                     headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        self._address_times.append(now)
        body = await request.json()
        addrs = body.get("address") if isinstance(body, dict) else None
        addrs = [addrs] if isinstance(addrs, str) else addrs
        if not addrs or not all(isinstance(a, str) and _ADDR.match(a) for a in addrs):
            return self._error(400, "address must be an address or a list of addresses")
        have = self.addresses[s["id"]]
        have += [a for a in addrs if a.lower() not in {h.lower() for h in have}]
        return web.json_response({"streamId": s["id"], "address": addrs})
