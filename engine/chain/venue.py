"""What a chain offers an arbitrage, from its manifest entry: its flash lenders and how it charges
gas.  One place for the agents (roles/pricing.py) and the devnet's rival (engine/devnet/rival.py).

    loan_book(chain_manifest)        the manifest's Balancer Vault and Aave pool, lending every
                                     token the chain lists; a V2 flash swap is always offered
    CHAIN_GAS[chain]                 (GasModel style, symbol of the wrapped native token)
    gas_model(style, chain, native, base_fee, priority, min_priority)   the GasModel of that style
"""
from __future__ import annotations

from engine.arb.profit import GasModel, LoanBook, LoanOffer
from engine.arb.types import LoanSource

CHAIN_GAS = {"arbitrum": ("arbitrum", "WETH"), "base": ("op-stack", "WETH"),
             "polygon": ("polygon", "WMATIC"), "ethereum": ("ethereum", "WETH")}


def loan_book(chain_manifest: dict | None) -> LoanBook:
    """The flash lenders a chain has: the manifest's Balancer Vault and Aave pool lend every
    token the chain lists (the devnet funds the Vault with each and gives Aave a reserve of
    each); a V2 flash swap on the route's first pair is always offered."""
    offers = []
    m = chain_manifest or {}
    lenders = m.get("lenders") or {}
    # the replicas hold addresses in lower case (the pool records' canonical form)
    tokens = [t["address"].lower() for t in (m.get("tokens") or {}).values() if t.get("address")]
    if "balancer" in lenders:
        fee = int(lenders["balancer"].get("fee_bps", 0)) * 100
        offers += [LoanOffer(LoanSource.BALANCER, lenders["balancer"]["address"].lower(), t, fee)
                   for t in tokens]
    if "aave" in lenders:
        fee = int(lenders["aave"].get("premium_bps", 5)) * 100
        offers += [LoanOffer(LoanSource.AAVE, lenders["aave"]["address"].lower(), t, fee)
                   for t in tokens]
    return LoanBook(offers)


def gas_model(style: str, chain: str, native: str, base_fee: int, priority: int = 0,
              min_priority: int | None = None) -> GasModel:
    """min_priority: Polygon's floor (None: GasModel's default, the network's)."""
    if style == "arbitrum":
        return GasModel.arbitrum(native, base_fee, chain=chain)
    if style == "op-stack":
        return GasModel.op_stack(native, base_fee, priority, 0, chain=chain)
    if style == "polygon":
        if min_priority is None:
            return GasModel.polygon(native, base_fee, priority, chain=chain)
        return GasModel.polygon(native, base_fee, priority, min_priority_fee_wei=min_priority,
                                chain=chain)
    return GasModel(chain, "ethereum", native, base_fee, priority)
