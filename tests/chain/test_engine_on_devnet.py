"""The engine pointed at the devnet through `[chains] manifest`: the agents' gas sampler polls
the real anvil of its chain (issue 5's manifest, issue 3's I/O task)."""
from __future__ import annotations


from engine.core.store import Store
from enginehelp import agent


def test_agents_sample_gas_from_the_devnet_named_by_the_manifest(devnet, engine_factory,
                                                                 tmp_path):
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    spot = agent(["arbitrum"])
    spot["tasks"]["gas-sampler"] = {"interval": 0.2}
    e = engine_factory(roles={"spot": spot}, chains={"manifest": str(manifest)}).start()
    assert e.cli("ctl", "-c", str(e.path), "spot", "checkpoint").returncode == 0

    def sampled():
        e.cli("ctl", "-c", str(e.path), "spot", "checkpoint")
        s = Store.open(e.store_dir, readonly=True)
        try:
            rec = s.load_checkpoint("spot")
        finally:
            s.close()
        st = rec and rec["states"].get("gas-sampler", {}).get("state", {})
        return st if st and st.get("samples", 0) >= 2 else None
    st = e.wait_for(sampled, 30, "two gas samples from anvil", poll=0.3)
    assert st["errors"] == 0 and isinstance(st["last_block"], int) and st["last_gwei"] > 0
    assert e.stop() == 0
