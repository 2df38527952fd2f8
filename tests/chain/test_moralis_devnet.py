"""A swap on the devnet, seen both ways: the node's own logs (raw JSON-RPC eth_getLogs, what the
chain monitor's WebSocket subscription also delivers) and the same logs in a Moralis Streams body
(its documented shape: topic0..topic3, decimal strings).  The webhook path must produce the very
same log dicts and the same (chain, block hash, tx, log index) key, so the monitor's PoolBook,
deduplicating by that key, yields one event for the two arrivals."""
from __future__ import annotations

import json

from engine.chain import moralis
from engine.chain.hooks import SeenLogs


def as_moralis_body(logs: list[dict], block: dict, confirmed: bool) -> bytes:
    return json.dumps({
        "confirmed": confirmed, "chainId": "0xa4b1", "abi": [], "streamId": "s", "tag": "t",
        "retries": 0, "block": {"number": str(int(block["number"], 16)), "hash": block["hash"],
                                "timestamp": str(int(block["timestamp"], 16))},
        "logs": [{"logIndex": str(int(lg["logIndex"], 16)), "transactionHash": lg["transactionHash"],
                  "address": lg["address"], "data": lg["data"],
                  **{f"topic{i}": lg["topics"][i] if i < len(lg["topics"]) else None
                     for i in range(4)}} for lg in logs],
        "txs": [], "txsInternal": [], "erc20Transfers": [], "erc20Approvals": [],
        "nftApprovals": {"ERC1155": [], "ERC721": []}, "nftTransfers": []}).encode()


def test_webhook_logs_equal_the_nodes_and_dedupe_with_them(arb):
    v2 = next(p for p in arb.m["pools"] if p["kind"] == "v2")
    v3 = next(p for p in arb.m["pools"] if p["kind"] == "v3")
    start = arb.w3.eth.block_number + 1
    arb.swap(v2, arb.m["tokens"][v2["symbol0"]]["symbol"], 10**15)
    arb.swap(v3, arb.m["tokens"][v3["symbol0"]]["symbol"], 10**15)
    rpc = arb.w3.provider.make_request
    node = rpc("eth_getLogs", [{"fromBlock": hex(start), "toBlock": "latest",
                                "address": [v2["address"], v3["address"]]}])["result"]
    assert {lg["address"].lower() for lg in node} == {v2["address"].lower(), v3["address"].lower()}
    seen = SeenLogs()
    for n in node:                       # the node path saw them first
        assert seen.add(moralis.log_key("arbitrum", n | {"blockHash": n["blockHash"].lower()}))
    by_block: dict[str, list[dict]] = {}
    for lg in node:
        by_block.setdefault(lg["blockHash"], []).append(lg)
    for bhash, logs in by_block.items():
        block = rpc("eth_getBlockByHash", [bhash, False])["result"]
        for confirmed in (False, True):
            d = moralis.parse(as_moralis_body(logs, block, confirmed))
            assert d.chain == "arbitrum" and d.block_hash == bhash.lower()
            for got, want in zip(d.logs, logs):
                assert got == {k: (want[k].lower() if isinstance(want[k], str) else want[k])
                               for k in got}, "the webhook log differs from the node's"
            assert seen.new_logs(d) == []   # both copies: already seen via the node
