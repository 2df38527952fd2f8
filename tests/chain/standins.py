"""Local stand-ins for paid submission endpoints we cannot reach, speaking their documented
wire formats over HTTP on loopback (aiohttp), and forwarding what they accept to the devnet's
anvil so the transaction really lands.

- bloXroute Cloud API `polygon_private_tx` (docs.bloxroute.com/polygon/submit-transactions/
  private-transactions): params {"transaction": raw hex without 0x}, the account's
  `Authorization` header; answers {"txHash": "0x…"}.
- Arbitrum Timeboost `timeboost_sendExpressLaneTransaction` (docs.arbitrum.io/how-arbitrum-works/
  timeboost/how-to-use-timeboost): params [{chainId, round, auctionContractAddress,
  sequenceNumber, transaction, options, signature}], signature = EIP-191 over
  keccak256("TIMEBOOST_BID") ‖ chainId(32) ‖ auction(20) ‖ round(8) ‖ sequenceNumber(8) ‖ tx;
  errors NOT_EXPRESS_LANE_CONTROLLER, BAD_ROUND_NUMBER, SEQUENCE_NUMBER_TOO_LOW,
  WRONG_SIGNATURE; an empty result when accepted.  It also answers the auction contract's
  `currentRound()` / `resolvedRounds()` eth_calls as the node would.
- Anything else is passed to anvil (optionally with another `web3_clientVersion`), after
  `slow[method]` seconds if given (a node slow to answer; `in_flight` counts what it holds).
"""
from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
from aiohttp import web
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

SEL_CURRENT_ROUND = "0x" + keccak(text="currentRound()")[:4].hex()
SEL_RESOLVED = "0x" + keccak(text="resolvedRounds()")[:4].hex()


class StandIn:
    def __init__(self, upstream: str, *, auth: str | None = None, client_version: str | None = None,
                 auction: str | None = None, controller: str | None = None, round: int = 7,
                 chain_id: int = 42161, slow: dict[str, float] | None = None,
                 batches: bool = True):
        self.upstream, self.auth, self.client_version = upstream, auth, client_version
        self.batches = batches          # False: a batch gets HTTP 400, as some providers answer
        self.slow, self.in_flight = dict(slow or {}), 0
        self.auction = auction.lower() if auction else None
        self.controller, self.round, self.chain_id = controller, round, chain_id
        self.expected_seq = 0
        self.received: list[tuple[str, dict]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "StandIn":
        self._thread.start()
        assert self._ready.wait(10), "stand-in did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        async def session():
            return aiohttp.ClientSession()
        self._session = self._loop.run_until_complete(session())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._session.close())
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    async def _up(self, method: str, params) -> dict:
        async with self._session.post(self.upstream, json={"jsonrpc": "2.0", "id": 1,
                                                           "method": method, "params": params}) as r:
            return await r.json()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, list) and not self.batches:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "batch requests are not supported"}}, status=400)
        if isinstance(body, list):        # a JSON-RPC batch: each call as if alone, in order
            answers = [await self._one(request, b) for b in body]
            return web.json_response([json.loads(a.text) for a in answers])
        return await self._one(request, body)

    async def _one(self, request: web.Request, body: dict) -> web.Response:
        method, params, rid = body.get("method"), body.get("params"), body.get("id")

        def answer(result=None, error=None):
            doc = {"jsonrpc": "2.0", "id": rid}
            doc.update({"error": {"code": -32000, "message": error}} if error else {"result": result})
            return web.json_response(doc)

        self.received.append((method, {"params": params, "auth": request.headers.get("Authorization")}))
        if method == "polygon_private_tx":
            if self.auth is not None and request.headers.get("Authorization") != self.auth:
                return web.json_response({"jsonrpc": "2.0", "id": rid, "error": {
                    "code": -32600, "message": "Invalid authorization header"}}, status=401)
            tx = (params or {}).get("transaction", "") if isinstance(params, dict) else ""
            if not tx or tx.startswith("0x"):
                return answer(error="transaction: raw bytes without 0x prefix required")
            up = await self._up("eth_sendRawTransaction", ["0x" + tx])
            if "error" in up:
                return answer(error=up["error"].get("message"))
            return answer({"txHash": up["result"]})
        if method == "timeboost_sendExpressLaneTransaction":
            return answer(*await self._express(params[0]))
        if method == "web3_clientVersion" and self.client_version:
            return answer(self.client_version)
        if method == "eth_call" and self.auction and \
                str(params[0].get("to", "")).lower() == self.auction:
            data = params[0].get("data", params[0].get("input", ""))
            if data.startswith(SEL_CURRENT_ROUND):
                return answer("0x" + abi_encode(["uint64"], [self.round]).hex())
            if data.startswith(SEL_RESOLVED):
                ctl = self.controller or "0x" + "00" * 20
                return answer("0x" + abi_encode(["(address,uint64)", "(address,uint64)"],
                                                [(ctl, self.round), ("0x" + "00" * 20, self.round - 1)]).hex())
        if method in self.slow:
            self.in_flight += 1
            try:
                await asyncio.sleep(self.slow[method])
            finally:
                self.in_flight -= 1
        up = await self._up(method, params)
        return web.json_response({**up, "id": rid})

    async def _express(self, sub: dict):
        try:
            rnd, seq = int(sub["round"], 16), int(sub["sequenceNumber"], 16)
            cid, raw = int(sub["chainId"], 16), bytes.fromhex(sub["transaction"][2:])
            auction = sub["auctionContractAddress"]
        except (KeyError, ValueError, TypeError):
            return None, "MALFORMED_DATA"
        if cid != self.chain_id:
            return None, "WRONG_CHAIN_ID"
        if rnd != self.round:
            return None, "BAD_ROUND_NUMBER"
        payload = (keccak(text="TIMEBOOST_BID") + cid.to_bytes(32, "big") + bytes.fromhex(auction[2:])
                   + rnd.to_bytes(8, "big") + seq.to_bytes(8, "big") + raw)
        try:
            who = Account.recover_message(encode_defunct(primitive=payload), signature=sub["signature"])
        except Exception:
            return None, "WRONG_SIGNATURE"
        if self.controller is None or who.lower() != self.controller.lower():
            return None, "NOT_EXPRESS_LANE_CONTROLLER"
        if seq < self.expected_seq:
            return None, "SEQUENCE_NUMBER_TOO_LOW"
        up = await self._up("eth_sendRawTransaction", [sub["transaction"]])
        if "error" in up:
            return None, up["error"].get("message")
        self.expected_seq = seq + 1
        return None, None
