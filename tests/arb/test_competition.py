"""Back-runners and contested pools from swap logs (engine/arb/competition.py)."""
from __future__ import annotations

from engine.arb.competition import analyse
from engine.arb.events import SYNC_TOPIC, V2_SWAP_TOPIC, V3_SWAP_TOPIC

PAIR, POOL = "0x" + "aa" * 20, "0x" + "bb" * 20
TRADER, BOT, US, ROUTER = "0x" + "01" * 20, "0x" + "b0" * 20, "0x" + "05" * 20, "0x" + "0e" * 20


def _topic(addr: str) -> str:
    return "0x" + "0" * 24 + addr[2:]


def _words(*vals: int) -> str:
    return "0x" + "".join((v % (1 << 256)).to_bytes(32, "big").hex() for v in vals)


class Chain:
    """Logs in eth_getLogs shape, block by block."""

    def __init__(self):
        self.logs, self.block, self.index = [], 100, 0

    def _log(self, address, topics, data):
        self.logs.append({"address": address, "topics": topics, "data": data,
                          "blockNumber": hex(self.block), "logIndex": hex(self.index),
                          "transactionHash": "0x" + f"{len(self.logs):064x}", "blockHash": "0x" + "00" * 32})
        self.index += 1

    def v2(self, r0: int, r1: int, to: str, zero_in: bool):
        self._log(PAIR, [SYNC_TOPIC], _words(r0, r1))
        amounts = (1, 0, 0, 1) if zero_in else (0, 1, 1, 0)
        self._log(PAIR, [V2_SWAP_TOPIC, _topic(ROUTER), _topic(to)], _words(*amounts))

    def v3(self, sqrt_price: int, to: str):
        self._log(POOL, [V3_SWAP_TOPIC, _topic(ROUTER), _topic(to)], _words(1, -1, sqrt_price, 10**18, 0))

    def next_block(self, n: int = 1):
        self.block += n
        self.index = 0


def test_a_bot_that_takes_every_big_move_back_is_found():
    c = Chain()
    c.v2(1000, 1000, TRADER, True)           # sets the price
    c.v3(1 << 96, TRADER)
    for _ in range(3):
        c.next_block()
        c.v2(1000, 980, TRADER, True)        # -2 %: big
        c.v2(1000, 1000, BOT, False)         # the bot takes it back, same block
        c.v3((1 << 96) * 1010 // 1000, TRADER)   # +2 % on the V3 pool
        c.next_block()
        c.v3(1 << 96, BOT)                   # taken back in the next block
    c.next_block()
    c.v2(1000, 1001, TRADER, False)          # a small swap: no trigger
    comp = analyse(c.logs)
    assert comp.big == {PAIR: 3, POOL: 3} and comp.swaps == 15 and comp.bad == 0
    assert comp.contested() == {PAIR: 1.0, POOL: 1.0}
    [bot] = comp.bots()
    assert bot == {"address": BOT, "backruns": 6, "pools": {PAIR: 3, POOL: 3}}
    assert (comp.first_block, comp.last_block) == (100, 107)


def test_not_a_backrun_same_direction_same_actor_too_late_or_excluded():
    c = Chain()
    c.v2(1000, 1000, TRADER, True)
    c.next_block()
    c.v2(1000, 980, TRADER, True)            # big
    c.v2(1000, 979, BOT, True)               # same direction: piles on, not a back-run
    c.next_block(5)
    c.v2(1000, 1000, TRADER, True)           # (big, up) then the same actor reverses itself
    c.v2(1000, 980, TRADER, False)
    c.next_block(5)
    c.v2(1000, 1000, TRADER, True)           # big (up)
    c.next_block(3)
    c.v2(1000, 980, BOT, False)              # three blocks later: outside the window
    c.next_block(5)
    c.v2(1000, 1000, TRADER, True)           # big (up)
    c.v2(1000, 980, US, False)               # our own executor: excluded
    comp = analyse(c.logs, exclude=[US])
    assert comp.big[PAIR] >= 4 and comp.backruns == {} and comp.contested()[PAIR] == 0.0
    assert analyse(c.logs, window_blocks=3, exclude=[US]).backruns == {(BOT, PAIR): 1}
    assert analyse(c.logs).backruns == {(US, PAIR): 1}


def test_malformed_logs_are_counted_not_raised():
    c = Chain()
    c.v3(1 << 96, TRADER)
    bad = [{"address": POOL}, {**c.logs[0], "data": "0x12"}, {**c.logs[0], "blockNumber": True}]
    comp = analyse(c.logs + bad)
    assert comp.bad == 3 and comp.swaps == 1
