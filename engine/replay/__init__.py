"""`syndicate replay FILE...`: recorded logs through the real engine, in paper mode.

    inputs.py   the files (eth_getLogs JSON / JSON lines, demeter-fetch raw CSVs) → logs in
                eth_getLogs shape per chain, block order; pools seeded from the first state
                each log reveals or from a pool-state file; bad lines named, skipped, counted
    cli.py      the command: prepares the input, runs a real engine (`syndicate run` on a
                generated engine.toml) whose source is roles.replay:ReplaySource, waits until
                it is consumed, stops the engine, prints what each role decided and why
roles/replay.py holds the source role itself: the chain monitor's PoolBook and publish path.
"""
