"""Small builders for the arb tests (pools, graphs, loan offers).  A module of its own, not
conftest: several test folders have a conftest, and `from conftest import` picks whichever
was imported first."""
from __future__ import annotations

from engine.arb.graph import PoolGraph
from engine.arb.profit import GasModel, LoanBook, LoanOffer
from engine.arb.search import OpportunitySearch, SearchConfig
from engine.arb.types import LoanSource

W, U, D = "0xW000", "0xU000", "0xD000"   # WETH-like (native), USDC-like, DAI-like


def make_search(pools, gas: GasModel, offers=(), max_hops: int = 3, v2_flash: bool = True,
                **cfg) -> OpportunitySearch:
    graph = PoolGraph(pools, max_hops=max_hops, base_tokens=[W, U])
    return OpportunitySearch(graph, gas, LoanBook(list(offers), v2_flash_swap=v2_flash),
                             SearchConfig(max_hops=max_hops, **cfg))


def balancer(token: str) -> LoanOffer:
    return LoanOffer(LoanSource.BALANCER, "0xVault", token, 0)


def aave(token: str) -> LoanOffer:
    return LoanOffer(LoanSource.AAVE, "0xAave", token, 500)
