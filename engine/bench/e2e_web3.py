"""The baseline of `syndicate bench e2e`: the trading path as one plain web3.py loop.

One process, one thread, what a first arbitrage bot looks like: make the big swap, poll a log
filter (`w3.eth.filter(...).get_new_entries()`, every 5 ms) until its logs come, re-read every
pool over JSON-RPC, run the same engine/arb search and decision (web3's eth_call and
estimate_gas on "pending" as the simulator), build the transaction with web3's contract
encoder, sign with eth-account, `send_raw_transaction`, `wait_for_transaction_receipt`.
Stages, in ms (time.monotonic_ns):
    detect  the swap's receipt returned → the filter returned its logs
    decide  → the approved Action (pools re-read, search, eth_call + estimate_gas)
    sign    → signed
    send    → send_raw_transaction returned
    mined   → the receipt was read
"""
from __future__ import annotations

import os
import time

POLL_S = 0.005     # the filter's polling interval


def run_baseline(manifest: dict, trades: int, interval: float, seed: int, key: str,
                 progress=None) -> dict:
    from eth_account import Account
    from web3 import HTTPProvider, Web3

    from engine.arb.decision import Decider, DecisionConfig, Simulation, StateInfo
    from engine.arb.graph import PoolGraph
    from engine.arb.profit import GasModel
    from engine.arb.search import OpportunitySearch, SearchConfig
    from engine.chain.executor import Executor, hops_arg, loan_arg
    from engine.chain.pools import load_pools, specs_from_manifest
    from engine.chain.rpc import RpcClient
    from engine.chain.venue import loan_book
    from engine.devnet import Traffic

    from .e2e import CHAIN, STAGES
    m = manifest["chains"][CHAIN]
    w3 = Web3(HTTPProvider(m["rpc_url"]))
    acct = Account.from_key(key)
    ex = Executor(w3, m["contracts"]["executor"], caller=acct.address)
    specs, loans = specs_from_manifest(m), loan_book(m)
    weth, usdc = m["tokens"]["WETH"]["address"].lower(), m["tokens"]["USDC"]["address"].lower()
    flt = w3.eth.filter({"address": [Web3.to_checksum_address(p["address"]) for p in m["pools"]]})
    traffic = Traffic(manifest, seed=seed, chains=[CHAIN])
    out = {"stages": {s: [] for s in STAGES}, "log_to_sent": [], "sent": 0, "landed": 0,
           "profitable": 0, "reverted": 0, "refused": {}, "states": {}}

    def simulate(action):
        s = ex.simulate(action, estimate_gas=True, block="pending")
        return Simulation(s.ok, s.profit if s.ok else None, s.gas, s.error)

    def count(state):
        out["states"][state] = out["states"].get(state, 0) + 1

    for i in range(trades):
        t0 = time.monotonic()
        traffic.step(big=True)
        t_swap = time.monotonic_ns()
        if progress:
            progress("web3.py", i + 1, trades)
        logs, end = [], time.monotonic() + 2.0
        while time.monotonic() < end:
            logs = flt.get_new_entries()
            if logs:
                break
            time.sleep(POLL_S)
        t_log = time.monotonic_ns()
        if logs:
            moved = sorted({str(lg["address"]).lower() for lg in logs})
            loaded = load_pools(RpcClient(m["rpc_url"]), specs)
            graph = PoolGraph(loaded.pools.values(), max_hops=2, base_tokens=(usdc, weth))
            gas = GasModel.arbitrum(weth, w3.eth.get_block("latest")["baseFeePerGas"], chain=CHAIN)
            opps = OpportunitySearch(graph, gas, loans, SearchConfig(max_hops=2),
                                     chain=CHAIN).on_event(moved)
            d = None
            if opps:
                d = Decider(gas, DecisionConfig(min_profit=1, max_age_s=60.0), simulator=simulate) \
                    .decide(opps[0], graph, StateInfo(loaded.block, loaded.block, time.time()), f"b{i}")
            t_decided = time.monotonic_ns()
            if d is None or not d.approved:
                why = "no opportunity" if d is None else d.reason.split(":", 1)[0]
                out["refused"][why] = out["refused"].get(why, 0) + 1
                count("refused")
            else:
                a = d.action
                cs = Web3.to_checksum_address
                hops = [(cs(p), cs(i), cs(o), k, f) for p, i, o, k, f in hops_arg(a.route)]
                src, lender, token, amount, fee = loan_arg(a.loan)
                tx = ex.contract.functions.execute(
                    hops, (src, cs(lender), cs(token), amount, fee), a.min_profit, loaded.block + 4,
                ).build_transaction({"from": acct.address, "nonce": w3.eth.get_transaction_count(
                    acct.address, "pending"), "gas": a.gas_limit, "maxFeePerGas": a.max_fee_per_gas,
                    "maxPriorityFeePerGas": a.max_priority_fee_per_gas, "chainId": w3.eth.chain_id})
                signed = acct.sign_transaction(tx)
                t_signed = time.monotonic_ns()
                h = w3.eth.send_raw_transaction(signed.raw_transaction)
                t_sent = time.monotonic_ns()
                receipt = w3.eth.wait_for_transaction_receipt(h, timeout=30, poll_latency=0.02)
                t_mined = time.monotonic_ns()
                res = ex.outcome(receipt)
                out["sent"] += 1
                st = out["stages"]
                st["detect"].append((t_log - t_swap) / 1e6)
                st["decide"].append((t_decided - t_log) / 1e6)
                st["sign"].append((t_signed - t_decided) / 1e6)
                st["send"].append((t_sent - t_signed) / 1e6)
                st["mined"].append((t_mined - t_sent) / 1e6)
                out["log_to_sent"].append((t_sent - t_log) / 1e6)
                if res.status == 1:
                    out["landed"] += 1
                    out["profitable"] += res.profit > 0
                    count("landed")
                else:
                    out["reverted"] += 1
                    count("reverted")
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    out["stages"].pop("accept", None)
    out.update(load1=os.getloadavg()[0], swaps=traffic.sent)
    return out
