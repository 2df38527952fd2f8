"""FlashArbExecutor on the devnet: real Uniswap V2/V3 bytecode, the real Balancer Vault.

Every profit is predicted with engine/arb's exact integer math (v2.get_amount_out /
get_amount_in, v3.V3Pool read from the chain, profit.loan_fee) and must match the chain to the
wei.  Gas is never asserted.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.arb.profit import LoanOffer, loan_fee, repayment
from engine.arb.types import Action, Hop, Loan, LoanSource, PoolKind, Route
from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool
from engine.chain.contracts import load
from engine.chain.executor import Executor, NodeSigner

GAS = 2_000_000


# ---- reading pool state (what the engine's pool-state code will do from events) ------------

def v2_reserves(c, pool: dict, token_in: str) -> tuple[int, int]:
    r0, r1, _ = load("UniswapV2Pair").contract(c.w3, pool["address"]).functions.getReserves().call()
    return (r0, r1) if token_in == pool["token0"] else (r1, r0)


def v3_pool(c, pool: dict) -> V3Pool:
    """The pool's state with every initialised tick: the ticks come from its Mint events (the
    bitmap is too wide to scan when a big swap has pushed the price to the end of the range)."""
    p = load("UniswapV3Pool").contract(c.w3, pool["address"])
    sqrt_p, tick, *_ = p.functions.slot0().call()
    ticks = {}
    for log in p.events.Mint().get_logs(from_block=0):
        for t in (log["args"]["tickLower"], log["args"]["tickUpper"]):
            if t not in ticks:
                gross, net, *_ = p.functions.ticks(t).call()
                if gross:
                    ticks[t] = net
    return V3Pool(pool["address"], pool["token0"], pool["token1"], pool["fee"], pool["tick_spacing"],
                  sqrt_p, p.functions.liquidity().call(), tick, ticks)


def hop(c, pool: dict, token_in_symbol: str) -> Hop:
    t_in = c.token(token_in_symbol)
    t_out = pool["token1"] if t_in == pool["token0"] else pool["token0"]
    return Hop(pool["address"], PoolKind(pool["kind"]), t_in, t_out, pool["fee"], pool["dex"])


def models(c, route: Route) -> list:
    """engine/arb pool models of the route's pools, read from the chain now."""
    pools = {p["address"]: p for p in c.m["pools"]}
    out = []
    for h in route.hops:
        p = pools[h.pool]
        if h.kind is PoolKind.V2:
            r0, r1, _ = load("UniswapV2Pair").contract(c.w3, p["address"]).functions.getReserves().call()
            out.append(V2Pool(p["address"], p["token0"], p["token1"], r0, r1, h.fee))
        else:
            out.append(v3_pool(c, p))
    return out


def route_out(c, route: Route, amount: int, start: int = 0, state: list | None = None) -> int:
    """Exact output of route.hops[start:] for `amount` in, on the chain's current state."""
    state = state or models(c, route)
    for h, m in list(zip(route.hops, state))[start:]:
        if h.kind is PoolKind.V3:
            # the executor refuses a V3 hop that cannot take its whole input (PartialFill)
            zero_for_one = h.token_in == m.token0
            r = m.swap(zero_for_one, amount)
            if (r.amount0 if zero_for_one else r.amount1) != amount:
                raise ValueError(f"V3 pool {m.address} runs out of liquidity")
            amount = -(r.amount1 if zero_for_one else r.amount0)
        else:
            amount = m.amount_out(h.token_in, amount)
    return amount


def gain(c, route: Route, state: list):
    """out - in as a function of the input; an input the route cannot fill is worth nothing."""
    def f(a: int) -> int:
        try:
            return route_out(c, route, a, state=state) - a
        except ValueError:
            return -(1 << 255)
    return f


def optimum(c, route: Route, lo: int, hi: int) -> int:
    """The input that maximises out - in (one chain read, then pure math)."""
    return best(gain(c, route, models(c, route)), lo, hi)


def best(f, lo: int, hi: int) -> int:
    """Argmax of a unimodal integer function (ternary search, then a short scan)."""
    while hi - lo > 32:
        m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        if f(m1) < f(m2):
            lo = m1
        else:
            hi = m2
    return max(range(lo, hi + 1), key=f)


def action(c, route: Route, loan: Loan, min_profit: int = 1, amount_in: int = 0,
           gas: int = GAS) -> Action:
    return Action(chain=c.name, route=route, amount_in=amount_in or loan.amount, expected_out=0,
                  loan=loan, min_profit=min_profit, expected_profit=0, gas_limit=gas,
                  max_fee_per_gas=10**11, max_priority_fee_per_gas=10**9, deadline=2**62)


def live(c) -> Executor:
    return Executor(c.w3, c.executor.address, signer=NodeSigner(c.owner))


def run_and_check(c, route: Route, loan: Loan, expected: int):
    """Simulate, send, and require profit == expected to the wei, paid to the owner."""
    assert expected > 0
    token = route.token
    before = c.balance(token, c.owner)
    sim = c.executor.simulate(action(c, route, loan))
    assert sim.ok, sim.error
    assert sim.profit == expected
    out = live(c).send(action(c, route, loan, min_profit=expected))
    assert out.status == 1, out
    assert out.profit == expected
    assert c.balance(token, c.owner) - before == expected
    assert c.balance(token, c.executor.address) == 0
    assert out.source is LoanSource(loan.source) and out.lender == loan.lender
    print(f"\n{loan.source.value:<11} {len(route.hops)} hops: profit {expected}, gas {out.gas_used}")
    return out


# ---- a price gap between two V2 DEXes -------------------------------------------------------

@pytest.fixture
def v2_gap(arb):
    """Sell 300 WETH into uniswap_v2 WETH/USDC: WETH is cheap there, dear on sushiswap_v2."""
    c = arb
    uni, sushi = c.pool("uniswap_v2", "WETH", "USDC"), c.pool("sushiswap_v2", "WETH", "USDC")
    c.swap(uni, "WETH", 300 * 10**18)
    route = Route((hop(c, uni, "USDC"), hop(c, sushi, "WETH")))
    amount = optimum(c, route, 10**6, 2_000_000 * 10**6)
    return c, route, amount


def test_two_hop_v2_flash_swap_on_first_pair_matches_exact_math(v2_gap):
    """The loan is hop 0: receive its WETH first, pay its USDC input last, no extra fee."""
    c, route, amount = v2_gap
    loan, repay = repayment(route, LoanOffer(LoanSource.UNISWAP_V2, route.hops[0].pool, route.token),
                            amount)
    assert (loan.amount, loan.fee, repay) == (amount, 0, amount)
    out = route_out(c, route, amount)
    res = run_and_check(c, route, loan, out - repay)
    assert res.borrowed == amount and res.repaid == repay and res.amount_out == out


@pytest.mark.parametrize("source", [LoanSource.UNISWAP_V2, LoanSource.UNISWAP_V3,
                                    LoanSource.BALANCER, LoanSource.AAVE])
def test_two_hop_v2_route_with_each_lender(v2_gap, source):
    c, route, amount = v2_gap
    usdc = c.token("USDC")
    if source is LoanSource.UNISWAP_V2:  # a pair outside the route lends USDC, 0.3 %
        lender, ppm = c.pool("uniswap_v2", "USDC", "USDT")["address"], 3000
    elif source is LoanSource.UNISWAP_V3:  # pool.flash on the 0.01 % USDC/USDT pool
        lender, ppm = c.pool("uniswap_v3", "USDC", "USDT", 100)["address"], 100
    elif source is LoanSource.BALANCER:  # the real Vault: flash-loan fee percentage 0
        lender, ppm = c.m["lenders"]["balancer"]["address"], 0
    else:
        lender, ppm = c.m["lenders"]["aave"]["address"], 500
    fee = loan_fee(source, amount, ppm)
    # Aave keeps the underlying in the reserve's aToken, the others in the lender itself
    holder = aave_atoken(c, usdc) if source is LoanSource.AAVE else lender
    holder_before = c.balance(usdc, holder)
    out = route_out(c, route, amount)
    res = run_and_check(c, route, Loan(source, lender, usdc, amount, fee), out - amount - fee)
    assert res.repaid == amount + fee
    if source is not LoanSource.UNISWAP_V2:
        assert c.balance(usdc, holder) - holder_before == fee


def aave_atoken(c, asset: str) -> str:
    pool = load("Pool").contract(c.w3, c.m["lenders"]["aave"]["address"])
    return pool.functions.getReserveData(asset).call()[8]  # ReserveData.aTokenAddress


def test_aave_pool_is_the_real_market_with_5_bps(arb):
    c = arb
    pool = load("Pool").contract(c.w3, c.m["lenders"]["aave"]["address"])
    assert pool.functions.FLASHLOAN_PREMIUM_TOTAL().call() == 5
    assert pool.functions.FLASHLOAN_PREMIUM_TO_PROTOCOL().call() == 0
    usdc = c.token("USDC")
    assert c.balance(usdc, aave_atoken(c, usdc)) > 0
    assert set(pool.functions.getReservesList().call()) == {t["address"] for t in c.m["tokens"].values()}


def test_balancer_vault_is_the_real_bytecode_with_zero_fee(arb):
    c = arb
    vault = load("Vault").contract(c.w3, c.m["lenders"]["balancer"]["address"])
    code = c.w3.eth.get_code(vault.address)
    assert len(code) > 20_000  # the real Vault, not a stand-in
    collector = load("Vault").contract(c.w3, vault.address).functions.getProtocolFeesCollector().call()
    abi = [{"name": "getFlashLoanFeePercentage", "type": "function", "inputs": [],
            "outputs": [{"type": "uint256", "name": ""}], "stateMutability": "view"}]
    assert c.w3.eth.contract(address=collector, abi=abi).functions.getFlashLoanFeePercentage().call() == 0


# ---- V2 <-> V3 and a three-hop cycle --------------------------------------------------------

def test_v2_v3_route_matches_exact_math(arb):
    c = arb
    v3 = c.pool("uniswap_v3", "WETH", "USDC", 500)
    v2 = c.pool("uniswap_v2", "WETH", "USDC")
    c.swap(v3, "WETH", 2_500 * 10**18)  # WETH cheap on V3 now (past the narrow range)
    route = Route((hop(c, v3, "USDC"), hop(c, v2, "WETH")))
    state = v3_pool(c, v3)
    amount = optimum(c, route, 10**6, 1_500_000 * 10**6)
    lender = c.m["lenders"]["balancer"]["address"]
    expected = route_out(c, route, amount) - amount
    assert state.tick == v3_pool(c, v3).tick
    run_and_check(c, route, Loan(LoanSource.BALANCER, lender, c.token("USDC"), amount, 0), expected)


def test_v3_swap_crossing_ticks_matches_the_model(arb):
    """The model must follow the pool across initialised ticks (the big swap crosses several)."""
    c = arb
    v3 = c.pool("uniswap_v3", "WETH", "USDC", 500)
    before = v3_pool(c, v3)
    amount = 3_000 * 10**18
    predicted = before.swap(c.token("WETH") == v3["token0"], amount)
    assert predicted.ticks_crossed >= 1
    usdc = c.token("USDC")
    got_before = c.balance(usdc, c.deployer)
    c.swap(v3, "WETH", amount)
    got = c.balance(usdc, c.deployer) - got_before
    assert got == -(predicted.amount1 if usdc == v3["token1"] else predicted.amount0)
    after = v3_pool(c, v3)
    assert (after.sqrt_price_x96, after.liquidity, after.tick) == \
        (predicted.pool.sqrt_price_x96, predicted.pool.liquidity, predicted.pool.tick)


def test_three_hop_cycle_matches_exact_math(arb):
    c = arb
    wu = c.pool("uniswap_v2", "WETH", "USDT")
    c.swap(wu, "WETH", 250 * 10**18)  # WETH cheap in USDT on uniswap_v2
    route = Route((hop(c, wu, "USDT"),
                   hop(c, c.pool("uniswap_v3", "WETH", "USDC", 500), "WETH"),
                   hop(c, c.pool("sushiswap_v2", "USDC", "USDT"), "USDC")))
    assert route.is_cycle and route.token == c.token("USDT")
    amount = optimum(c, route, 10**6, 1_000_000 * 10**6)
    # flash swap on the first pair: the loan is hop 0
    loan, repay = repayment(route, LoanOffer(LoanSource.UNISWAP_V2, wu["address"], route.token), amount)
    run_and_check(c, route, loan, route_out(c, route, amount) - repay)
    # the same gap is gone now: the same order again is unprofitable and reverts
    assert not c.executor.simulate(action(c, route, loan)).ok


# ---- failures cost only gas ------------------------------------------------------------------

def _tokens_of(c, who):
    return {s: c.balance(t["address"], who) for s, t in c.m["tokens"].items()}


def test_unprofitable_route_reverts_and_costs_only_gas(arb):
    c = arb
    uni, sushi = c.pool("uniswap_v2", "WETH", "USDC"), c.pool("sushiswap_v2", "WETH", "USDC")
    route = Route((hop(c, uni, "USDC"), hop(c, sushi, "WETH")))  # no gap: fees eat it
    loan = Loan(LoanSource.BALANCER, c.m["lenders"]["balancer"]["address"], c.token("USDC"),
                10_000 * 10**6, 0)
    sim = c.executor.simulate(action(c, route, loan, min_profit=0))
    assert not sim.ok and sim.error.startswith("RouteShort("), sim.error
    eth_before, tokens_before = c.w3.eth.get_balance(c.owner), _tokens_of(c, c.owner)
    res = live(c).send(action(c, route, loan, min_profit=0))
    assert res.status == 0 and res.profit == 0
    assert c.w3.eth.get_balance(c.owner) == eth_before - res.gas_cost_wei
    assert res.gas_cost_wei > 0
    assert _tokens_of(c, c.owner) == tokens_before


def test_min_profit_above_the_gap_reverts(v2_gap):
    c, route, amount = v2_gap
    lender = c.m["lenders"]["balancer"]["address"]
    loan = Loan(LoanSource.BALANCER, lender, c.token("USDC"), amount, 0)
    expected = route_out(c, route, amount) - amount
    sim = c.executor.simulate(action(c, route, loan, min_profit=expected + 1))
    assert not sim.ok and sim.error == f"InsufficientProfit({expected}, {expected + 1})"
    assert c.executor.simulate(action(c, route, loan, min_profit=expected)).profit == expected


def test_past_its_deadline_block_it_reverts_expired(v2_gap):
    """The deadline block travels in the calldata: mined after it, the trade reverts."""
    from dataclasses import replace
    c, route, amount = v2_gap
    lender = c.m["lenders"]["balancer"]["address"]
    loan = Loan(LoanSource.BALANCER, lender, c.token("USDC"), amount, 0)
    head = c.w3.eth.block_number
    late = replace(action(c, route, loan), deadline_block=head - 1)
    sim = c.executor.simulate(late)     # anvil's eth_call on "latest" runs in block `head`
    assert not sim.ok and sim.error == f"Expired({head}, {head - 1})", sim.error
    assert c.executor.simulate(replace(late, deadline_block=head)).ok
    out = live(c).send(replace(late, deadline_block=c.w3.eth.block_number))   # mined one later
    assert out.status == 0


# ---- who may call ---------------------------------------------------------------------------

def test_stranger_cannot_execute_and_allow_list_works(v2_gap):
    c, route, amount = v2_gap
    loan = Loan(LoanSource.BALANCER, c.m["lenders"]["balancer"]["address"], c.token("USDC"), amount, 0)
    expected = route_out(c, route, amount) - amount
    stranger = Executor(c.w3, c.executor.address, caller=c.stranger)
    assert stranger.simulate(action(c, route, loan)).error == "NotAuthorized()"
    res = Executor(c.w3, c.executor.address, signer=NodeSigner(c.stranger)).send(action(c, route, loan))
    assert res.status == 0
    # only the owner may allow-list
    with pytest.raises(Exception):
        c.executor.set_allowed(c.stranger, True, sender=c.stranger)
    c.executor.set_allowed(c.allowed, True, sender=c.owner)
    owner_before = c.balance(c.token("USDC"), c.owner)
    res = Executor(c.w3, c.executor.address, signer=NodeSigner(c.allowed)).send(action(c, route, loan))
    assert res.status == 1 and res.profit == expected
    # the profit goes to the owner, never to the allow-listed sender
    assert c.balance(c.token("USDC"), c.owner) - owner_before == expected
    assert c.balance(c.token("USDC"), c.allowed) == 0


@pytest.mark.parametrize("fn,args", [
    ("uniswapV2Call", lambda c, ex: [ex, 10**18, 0, b"\x00" * 64]),
    ("uniswapV3SwapCallback", lambda c, ex: [10**18, -(10**9), b"\x00" * 32]),
    ("uniswapV3FlashCallback", lambda c, ex: [0, 0, b""]),
    ("receiveFlashLoan", lambda c, ex: [[c.token("USDC")], [10**6], [0], b""]),
    ("executeOperation", lambda c, ex: [c.token("USDC"), 10**6, 0, ex, b""]),
])
@pytest.mark.parametrize("who", ["owner", "stranger"])
def test_forged_callback_reverts(arb, fn, args, who):
    """Nobody may call a callback outside a loan this contract started, not even the owner."""
    c = arb
    ex = c.executor.address
    sender = c.owner if who == "owner" else c.stranger
    call = getattr(c.executor.contract.functions, fn)(*args(c, ex))
    with pytest.raises(Exception) as err:
        call.call({"from": sender})
    assert "0x" in str(err.value) or "revert" in str(err.value).lower()
    h = call.transact({"from": sender, "gas": 300_000})
    assert c.w3.eth.wait_for_transaction_receipt(h)["status"] == 0


def test_forged_callback_from_a_real_pool_during_someone_elses_swap_reverts(arb):
    """A V2 flash swap that names the executor as its callee (anyone can do that) must fail:
    the executor is not expecting any pair at that moment."""
    c = arb
    pair = load("UniswapV2Pair").contract(c.w3, c.pool("uniswap_v2", "WETH", "USDC")["address"])
    fn = pair.functions.swap(10**6, 10**6, c.executor.address, b"\x01" * 64)
    h = fn.transact({"from": c.stranger, "gas": 500_000})
    assert c.w3.eth.wait_for_transaction_receipt(h)["status"] == 0


def test_paper_mode_sends_nothing(v2_gap):
    c, route, amount = v2_gap
    loan = Loan(LoanSource.BALANCER, c.m["lenders"]["balancer"]["address"], c.token("USDC"), amount, 0)
    block = c.w3.eth.block_number
    res = c.executor.send(action(c, route, loan))  # no signer: paper
    assert res.paper and res.status == 1 and res.profit == route_out(c, route, amount) - amount
    assert c.w3.eth.block_number == block


def test_key_signer_reads_the_key_from_the_environment_only(arb, monkeypatch):
    from engine.chain.executor import KEY_ENV, KeySigner
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LookupError, match=KEY_ENV):
        KeySigner.from_env()
    # anvil's well-known dev key for account 1 (the executor's owner): test-only
    key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
    monkeypatch.setenv(KEY_ENV, key)
    s = KeySigner.from_env()
    assert s.address == arb.owner and key[2:] not in repr(s)


# ---- any gap, any amount: the prediction is exact or the contract refuses ---------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(push=st.integers(20, 4000), into_v3=st.booleans(), frac=st.floats(0.01, 3.0),
       source=st.sampled_from([LoanSource.UNISWAP_V2, LoanSource.BALANCER, LoanSource.AAVE]))
def test_any_gap_and_amount_is_exact_or_reverts(arb, push, into_v3, frac, source):
    """Push `push` WETH into one of a V3/V2 pair of pools, then route through both at a random
    fraction (up to 3x) of the best amount: a positive prediction is paid to the wei, anything
    else reverts and leaves no token behind."""
    c = arb
    snap = c.w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        v3 = c.pool("uniswap_v3", "WETH", "USDC", 500)
        v2 = c.pool("uniswap_v2", "WETH", "USDC")
        cheap, dear = (v3, v2) if into_v3 else (v2, v3)
        c.swap(cheap, "WETH", push * 10**18)
        route = Route((hop(c, cheap, "USDC"), hop(c, dear, "WETH")))
        state = models(c, route)
        amount = max(1, int(best(gain(c, route, state), 10**6, 3_000_000 * 10**6) * frac))
        if source is LoanSource.UNISWAP_V2 and cheap["kind"] != "v2":
            source = LoanSource.BALANCER  # a flash swap needs a V2 first hop
        offer = {LoanSource.UNISWAP_V2: LoanOffer(source, cheap["address"], route.token),
                 LoanSource.BALANCER: LoanOffer(source, c.m["lenders"]["balancer"]["address"], route.token),
                 LoanSource.AAVE: LoanOffer(source, c.m["lenders"]["aave"]["address"], route.token, 500)}[source]
        loan, repay = repayment(route, offer, amount)
        try:
            expected = route_out(c, route, amount, state=state) - repay
        except ValueError:  # the model says the V3 pool cannot fill it: so must the contract
            expected = None
        sim = c.executor.simulate(action(c, route, loan, min_profit=0), estimate_gas=True)
        if expected is None or expected < 0:
            assert not sim.ok, (expected, sim)
        else:
            assert sim.ok and sim.profit == expected, (expected, sim)
            # a swap back from the end of the price range walks hundreds of empty bitmap words:
            # the gas limit must come from the estimate, as the engine's will
            out = live(c).send(action(c, route, loan, min_profit=expected, gas=sim.gas * 12 // 10))
            assert out.status == 1 and out.profit == expected
        assert c.balance(route.token, c.executor.address) == 0
        assert c.balance(c.token("WETH"), c.executor.address) == 0
    finally:
        assert c.w3.provider.make_request("evm_revert", [snap])["result"] is True


# ---- offline: calldata and revert decoding ----------------------------------------------------

def test_calldata_matches_web3s_encoder_and_decodes_back():
    from eth_abi import decode
    from web3 import Web3
    from engine.chain.executor import encode_execute, hops_arg, loan_arg
    a, b, p = (Web3.to_checksum_address(f"0x{n * 20}") for n in ("11", "22", "33"))
    route = Route((Hop(p, PoolKind.V2, a, b, 30), Hop(b, PoolKind.V3, b, a, 500)))
    act = Action("arbitrum", route, 10**18, 0, Loan(LoanSource.AAVE, p, a, 10**18, 5 * 10**14), 7, 0,
                 1, 1, 1, 1, deadline_block=4242)
    data = encode_execute(act)
    c = load("FlashArbExecutor").contract(Web3(), p)
    assert "0x" + data.hex() == c.encode_abi("execute", args=[hops_arg(route), loan_arg(act.loan), 7,
                                                              4242])
    hops, loan, min_profit, deadline = decode(["(address,address,address,uint8,uint24)[]",
                                               "(uint8,address,address,uint256,uint256)", "uint256",
                                               "uint256"], data[4:])
    assert [h[3] for h in hops] == [0, 1] and hops[0][4] == 30 and hops[1][4] == 0
    assert loan == (3, p.lower(), a.lower(), 10**18, 5 * 10**14) and min_profit == 7
    assert deadline == 4242


_ADDR = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_U256 = st.integers(0, 2**256 - 1)


@settings(max_examples=300, deadline=None)
@given(hops=st.lists(st.tuples(_ADDR, _ADDR, st.sampled_from([PoolKind.V2, PoolKind.V3]),
                               st.integers(0, 2**24 - 1)), min_size=1, max_size=4), first=_ADDR,
       src=st.sampled_from(list(LoanSource)), lender=_ADDR, token=_ADDR, amount=_U256, fee=_U256,
       min_profit=_U256, deadline=_U256)
def test_calldata_is_byte_for_byte_eth_abis(hops, first, src, lender, token, amount, fee,
                                            min_profit, deadline):
    from eth_abi import encode
    from engine.chain.executor import (_EXECUTE_TYPES, _execute_selector, encode_execute,
                                       hops_arg, loan_arg)
    tokens = [first] + [out for _, out, _, _ in hops]     # each hop starts where the last ended
    route = Route(tuple(Hop(p, k, tokens[i], out, f) for i, (p, out, k, f) in enumerate(hops)))
    act = Action("arbitrum", route, 1, 0, Loan(src, lender, token, amount, fee), min_profit, 0,
                 1, 1, 1, 1, deadline_block=deadline)
    assert encode_execute(act) == _execute_selector() + encode(
        _EXECUTE_TYPES, [hops_arg(route), loan_arg(act.loan), min_profit, deadline])


@pytest.mark.parametrize("field, change", [
    ("min_profit", {"min_profit": -1}), ("deadline_block", {"deadline_block": 2**256}),
    ("loan.amount", {"loan": Loan(LoanSource.AAVE, "0x" + "11" * 20, "0x" + "22" * 20, -5, 0)}),
    ("loan.lender", {"loan": Loan(LoanSource.AAVE, "0x" + "11" * 19, "0x" + "22" * 20, 5, 0)}),
    ("hops[1].pool", {"route": Route((Hop("0x" + "33" * 20, PoolKind.V2, "0x" + "11" * 20,
                                          "0x" + "22" * 20, 30),
                                      Hop("0x" + "zz" * 20, PoolKind.V2, "0x" + "22" * 20,
                                          "0x" + "11" * 20, 30)))}),
    ("hops[0].fee", {"route": Route((Hop("0x" + "33" * 20, PoolKind.V2, "0x" + "11" * 20,
                                         "0x" + "22" * 20, 2**24),))}),
    ("hops[0].token_in", {"route": Route((Hop("0x" + "33" * 20, PoolKind.V2, "0x 11" + "11" * 18 + "1",
                                              "0x" + "22" * 20, 30),))}),
])
def test_calldata_refuses_a_value_outside_its_type_naming_it(field, change):
    from dataclasses import replace
    from engine.chain.executor import encode_execute
    a, b, p = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
    act = Action("arbitrum", Route((Hop(p, PoolKind.V2, a, b, 30), Hop(b, PoolKind.V3, b, a, 500))),
                 10**18, 0, Loan(LoanSource.AAVE, p, a, 10**18, 0), 7, 0, 1, 1, 1, 1,
                 deadline_block=4242)
    with pytest.raises(ValueError, match=rf"calldata: {re.escape(field)} = "):
        encode_execute(replace(act, **change))


def test_revert_decoding():
    from eth_abi import encode
    from eth_utils import keccak
    from engine.chain.executor import decode_revert
    sel = keccak(text="InsufficientProfit(uint256,uint256)")[:4]
    assert decode_revert(sel + encode(["uint256", "uint256"], [5, 9])) == "InsufficientProfit(5, 9)"
    assert decode_revert("0x" + (keccak(text="Error(string)")[:4] + encode(["string"], ["UniswapV2: K"])).hex()) \
        == "Error(UniswapV2: K)"
    assert decode_revert(keccak(text="NotAuthorized()")[:4]) == "NotAuthorized()"
    assert decode_revert(keccak(text="Expired(uint256,uint256)")[:4] + encode(["uint256", "uint256"], [12, 10])) \
        == "Expired(12, 10)"
    assert decode_revert(b"") == "reverted without data"
    assert decode_revert(b"\xde\xad\xbe\xef") == "revert 0xdeadbeef"
