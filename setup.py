"""syndicate: a multi-process arbitrage engine (see README.md)."""
from setuptools import find_packages, setup

setup(
    name="syndicate",
    version="0.1.0",
    description="Supervisor, shared-memory rings, POSIX-signal task switching and LMDB state "
    "for a team of EVM arbitrage agents",
    python_requires=">=3.11",
    packages=find_packages(include=["engine", "engine.*", "roles", "roles.*", "scripts", "scripts.*"]),
    package_data={"contracts": ["*.sol", "build/*.json"]},
    install_requires=[
        "web3>=7,<9",
        "orjson>=3.9,<4",
        "posix_ipc>=1.1,<2",
        "lmdb>=1.4,<4",
        "websockets>=12,<18",
        "psutil>=5.9,<8",
        "setproctitle>=1.3,<2",
        "atomics>=1.0.2,<2",
        "eth-abi>=5,<7",
        "eth-account>=0.11,<0.15",
        # libsecp256k1 for eth-keys: signing 48 ms -> 7 ms here (pure-Python ECDSA otherwise)
        "coincurve>=20,<22",
        "rlp>=4,<6",              # engine/chain/keys.py serialises our EIP-1559 transactions
        "requests>=2.31,<3",
        "aiohttp>=3.9,<4",
        "prometheus_client>=0.20,<1",
        # `syndicate report`: the figures (Agg backend, no display needed)
        "matplotlib>=3.8,<4",
        "rich>=13,<16",           # the live summary of `syndicate run` on a terminal
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-timeout>=2.2,<3",
            "pytest-xdist>=3.5,<4",     # pytest.ini: two workers (the suite's time vs CI's budget)
            "hypothesis>=6.100,<7",
            "faster-fifo>=1.4,<2",
        ],
    },
    entry_points={"console_scripts": ["syndicate=engine.cli:main"]},
)
