"""The executor's signer: its own EIP-1559 serialisation is byte for byte eth-account's, and a
transaction of any other shape is still signed (by eth-account)."""
from __future__ import annotations

from eth_account import Account
import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings, strategies as st

from engine.chain.keys import LocalSigner, _eip1559_fields

KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
SIGNER = LocalSigner(KEY)

u256 = st.integers(0, 2**256 - 1)
address = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address("0x" + b.hex()))


def reference(tx: dict) -> tuple[bytes, str]:
    signed = Account.sign_transaction(tx, KEY)
    return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()


@settings(max_examples=300, deadline=None)
@given(chain_id=st.integers(1, 2**64 - 1), nonce=st.integers(0, 2**64 - 2), gas=st.integers(21_000, 2**63),
       fee=u256, prio=u256, value=u256, to=address, data=st.binary(max_size=2048))
def test_the_executor_shape_is_signed_as_eth_account_signs_it(chain_id, nonce, gas, fee, prio,
                                                              value, to, data):
    tx = {"type": 2, "chainId": chain_id, "nonce": nonce, "to": to, "value": value,
          "data": "0x" + data.hex(), "gas": gas, "maxFeePerGas": fee, "maxPriorityFeePerGas": prio}
    assert _eip1559_fields(tx) is not None            # the fast path is the one under test
    assert SIGNER.sign(tx) == reference(tx)


def test_the_real_trade_and_cancel_shapes():
    trade = {"type": 2, "chainId": 42161, "nonce": 7, "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
             "value": 0, "data": "0x" + "ab" * 900, "gas": 650_000, "maxFeePerGas": 2 * 10**8,
             "maxPriorityFeePerGas": 0}
    cancel = {"type": 2, "chainId": 137, "nonce": 3, "to": SIGNER.address, "value": 0, "data": "0x",
              "gas": 21_000, "maxFeePerGas": 90 * 10**9, "maxPriorityFeePerGas": 30 * 10**9}
    for tx in (trade, cancel):
        raw, h = SIGNER.sign(tx)
        assert (raw, h) == reference(tx)
        assert Account.recover_transaction(raw) == SIGNER.address


def test_other_shapes_go_to_eth_account():
    legacy = {"chainId": 1, "nonce": 1, "to": SIGNER.address, "value": 5, "gas": 21_000,
              "gasPrice": 10**9}
    with_list = {"type": 2, "chainId": 1, "nonce": 1, "to": SIGNER.address, "value": 0, "data": "0x",
                 "gas": 30_000, "maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1,
                 "accessList": [{"address": SIGNER.address, "storageKeys": []}]}
    for tx in (legacy, with_list):
        assert _eip1559_fields(tx) is None
        assert SIGNER.sign(tx) == reference(tx)


def test_what_eth_account_refuses_is_refused():
    ok = {"type": 2, "chainId": 1, "nonce": 0, "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
          "value": 0, "data": "0x", "gas": 21_000, "maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1}
    bad = [{**ok, "to": ok["to"].lower()},                      # not checksummed
           {**ok, "to": ok["to"][:-1] + "A"},                   # a wrong checksum
           {**ok, "value": True},                               # a bool is not an amount
           {**ok, "nonce": -1}]
    for tx in bad:
        assert _eip1559_fields(tx) is None
        with pytest.raises(Exception):          # eth-account's own error
            SIGNER.sign(tx)


def test_the_key_is_not_in_the_signer_s_text():
    assert KEY[2:] not in repr(SIGNER) and KEY[2:] not in str(SIGNER)
