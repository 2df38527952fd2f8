"""The executor's signing key: from the environment or a keystore file, and the checks a live
key must pass.

    SYNDICATE_EXECUTOR_KEY=0x…            the key itself, in the environment only
    keystore = "path"  password_env = V   an encrypted JSON keystore (eth-account), its password
                                          in the environment variable V

The key lives in one `LocalSigner` object: it is never logged, repr'd, stored or returned;
errors name the variable or file, never its content.  `live_refusal` says why a key must not
trade: one of anvil's well-known development accounts against a node that is not anvil, or an
address the executor contract would refuse (neither its owner nor allow-listed).
"""
from __future__ import annotations

import os
from pathlib import Path

import coincurve
import rlp
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak
from eth_utils import is_checksum_address

KEY_ENV = "SYNDICATE_EXECUTOR_KEY"

# The addresses of anvil's (and hardhat's) default mnemonic, "test test … junk", accounts 0-9:
# their keys are public, so whatever they hold on a real chain is taken within seconds.
ANVIL_DEV_ADDRESSES = frozenset(a.lower() for a in (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f", "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
))


class KeyError_(LookupError):
    """No usable key; the message names the variable or file, never a key."""


class LocalSigner:
    """Signs transactions and messages with a local key; knows nothing else."""

    def __init__(self, key):
        try:
            self._account = Account.from_key(key)
        except Exception:   # the library's message may quote the input: never pass it on
            raise KeyError_("the key is not a valid secp256k1 private key") from None
        self.address = self._account.address
        self._ecdsa = coincurve.PrivateKey(bytes(self._account.key))

    def __repr__(self) -> str:
        return f"LocalSigner({self.address})"

    __str__ = __repr__

    def sign(self, tx: dict) -> tuple[bytes, str]:
        """(raw signed transaction, its hash 0x…).  The executor's own shape (an EIP-1559
        transaction with the fields below and no access list) is serialised here, ~0.15 ms
        against eth-account's ~0.8-2 ms of validation and formatting on the sending path; byte
        for byte the same (tests/chain/test_keys.py checks it against eth-account).  Any other
        shape goes to eth-account."""
        fields = _eip1559_fields(tx)
        if fields is None:
            signed = self._account.sign_transaction(tx)
            return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()
        sig = self._ecdsa.sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
        raw = b"\x02" + rlp.encode(fields + [sig[64], int.from_bytes(sig[:32], "big"),
                                              int.from_bytes(sig[32:64], "big")])
        return raw, "0x" + keccak(raw).hex()

    def sign_message(self, payload: bytes) -> str:
        """EIP-191 personal signature of `payload`, 0x-hex."""
        return "0x" + bytes(self._account.sign_message(encode_defunct(primitive=payload)).signature).hex()

    # a signer behaves as engine/chain/executor.py's KeySigner for `send`
    def send(self, w3, tx: dict) -> bytes:
        tx = {**tx, "from": self.address}
        tx.setdefault("nonce", w3.eth.get_transaction_count(self.address, "pending"))
        tx.setdefault("chainId", w3.eth.chain_id)
        raw, _ = self.sign(tx)
        return bytes(w3.eth.send_raw_transaction(raw))


_EIP1559_KEYS = frozenset(("type", "chainId", "nonce", "to", "value", "data", "gas", "maxFeePerGas",
                           "maxPriorityFeePerGas"))


def _eip1559_fields(tx: dict) -> list | None:
    """The unsigned fields of an EIP-1559 transaction in the executor's shape (type 2, every
    field an int or 0x-hex, `to` a checksummed address as eth-account demands, no access list),
    else None (eth-account's job: it signs the rest, or refuses what it refuses)."""
    if tx.get("type") != 2 or not _EIP1559_KEYS.issuperset(tx):
        return None
    try:
        ints = [tx["chainId"], tx["nonce"], tx["maxPriorityFeePerGas"], tx["maxFeePerGas"],
                tx["gas"], tx.get("value", 0)]
        to, data = tx["to"], tx.get("data", "0x")
        if not all(type(i) is int and 0 <= i < 2**256 for i in ints) or \
                not isinstance(to, str) or not is_checksum_address(to) or \
                not isinstance(data, str) or not data.startswith("0x"):
            return None
        to_b, data_b = bytes.fromhex(to[2:]), bytes.fromhex(data[2:])
    except (KeyError, ValueError):
        return None
    return [*ints[:5], to_b, ints[5], data_b, []]


def load_signer(*, keystore: str = "", password_env: str = "", key_env: str = KEY_ENV,
                base: Path | None = None) -> LocalSigner:
    """The key from the keystore file (if named) or the environment; KeyError_ saying why not."""
    if keystore:
        path = Path(keystore)
        if base is not None and not path.is_absolute():
            path = base / path
        if not password_env:
            raise KeyError_(f"keystore {path}: password_env must name the variable holding its password")
        password = os.environ.get(password_env)
        if password is None:
            raise KeyError_(f"keystore {path}: environment variable {password_env} is not set")
        try:
            doc = path.read_text()
        except OSError as e:
            raise KeyError_(f"keystore {path}: cannot read ({e.strerror})") from None
        try:
            key = Account.decrypt(doc, password)
        except ValueError:
            raise KeyError_(f"keystore {path}: wrong password in {password_env}, or not a keystore") from None
        except Exception as e:
            raise KeyError_(f"keystore {path}: not a keystore file ({type(e).__name__})") from None
        return LocalSigner(key)
    key = os.environ.get(key_env)
    if not key:
        raise KeyError_(f"live sending needs a private key in the environment variable {key_env} "
                        "(or a keystore file: options keystore and password_env)")
    return LocalSigner(key)


def is_anvil(client_version: str) -> bool:
    return str(client_version).lower().startswith("anvil")


def live_refusal(address: str, client_version: str, owner: str, allowed: bool) -> str | None:
    """Why `address` must not trade through this contract on this node, or None."""
    if address.lower() in ANVIL_DEV_ADDRESSES and not is_anvil(client_version):
        return (f"{address} is one of anvil's well-known development accounts (its key is public) "
                f"and the node is {client_version!r}, not anvil")
    if address.lower() != owner.lower() and not allowed:
        return f"{address} is neither the executor contract's owner ({owner}) nor allow-listed"
    return None
