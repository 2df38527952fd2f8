"""What each role kind's status info gives `/metrics`: the kinds' `METRICS` declarations.

The supervisor's collector (engine/core/metrics.py) reads run_dir/roles/<role>.info.json (the
document a role writes with `RoleRuntime.set_info`) and exposes the numbers declared here as
`syndicate_<name>{role, <labels>}`; a role writes no metric itself.  A kind names its tuple:
`METRICS = metrics.MONITOR`.  To expose a new number, put it in the kind's info and add an
InfoMetric here (path: dotted keys, `*` for every key of a table, one label per `*`):
counters only grow while the role lives (a restart starts them again, which Prometheus's
rate() takes as a reset); gauges are anything else.
"""
from __future__ import annotations

from engine.core.kind import InfoMetric


def _per_chain(name: str, typ: str, doc: str, path: str) -> InfoMetric:
    return InfoMetric(f"chain_{name}", typ, doc, f"chains.*.{path}", ("chain",))


# roles.monitor:ChainMonitor (its info: {"chains": {chain: _ChainFeed.info()}, ...})
MONITOR = (
    _per_chain("events", "counter", "Pool events the monitor published", "events"),
    _per_chain("interrupts", "counter", "Published events at or above the threshold",
               "interrupts"),
    _per_chain("reverted_events", "counter", "Events taken back by a reorg", "reverted"),
    _per_chain("drifted_pools", "counter", "Pools whose book differed from the chain", "drift"),
    _per_chain("drift_checks", "counter", "Drift checks completed", "drift_checks"),
    _per_chain("hook_logs_applied", "counter", "Webhook hand-off logs that moved the book",
               "hooks.applied"),
    _per_chain("reorgs", "counter", "Reorgs the follower undid", "follower.reorgs"),
    _per_chain("failovers", "counter", "Switches to another endpoint", "follower.failovers"),
    _per_chain("bad_inputs", "counter", "Unusable messages from the node", "follower.bad"),
    _per_chain("head_block", "gauge", "The followed head block number", "follower.head"),
    _per_chain("pools", "gauge", "Pools in the monitor's book", "book.pools"),
    _per_chain("max_impact_bps", "gauge", "Largest price impact seen, basis points",
               "max_impact_bps"),
)

# roles.webhook:MoralisReceiver (its info: Stats.health(), MoralisReceiver.report)
RECEIVER = (
    InfoMetric("webhook_deliveries", "counter", "Streams deliveries accepted (200), per chain",
               "chains.*.deliveries", ("chain",)),
    InfoMetric("webhook_logs", "counter", "Logs handed on to the monitors", "chains.*.logs",
               ("chain",)),
    InfoMetric("webhook_duplicate_logs", "counter", "Logs dropped as already handed on",
               "chains.*.duplicates", ("chain",)),
    InfoMetric("webhook_refused", "counter", "Requests refused, per HTTP status", "refused.*",
               ("status",)),
    InfoMetric("webhook_test_deliveries", "counter", "Streams test deliveries", "tests"),
    InfoMetric("webhook_inbox_depth", "gauge", "Accepted deliveries not yet handed on",
               "inbox_depth"),
    InfoMetric("webhook_inbox_trimmed", "counter", "Processed deliveries deleted from the inbox "
               "after [moralis] keep", "trimmed"),
    InfoMetric("webhook_inbox_fsyncs", "counter", "fsyncs of the inbox (each makes a batch of "
               "deliveries durable before their 200s)", "inbox_fsync.fsyncs"),
    InfoMetric("webhook_inbox_fsync_p99_seconds", "gauge", "p99 of the inbox's last 512 fsyncs: "
               "the disk's share of every 200", "inbox_fsync.p99_s"),
)

# roles.agents:Agent and its kinds (info["opportunities"]: roles/pricing.py DecisionBook)
AGENT = (
    InfoMetric("opportunities", "counter", "Pool records past the threshold the agent priced "
               "(each gets one decision)", "opportunities.opportunities"),
    InfoMetric("opportunities_approved", "counter", "Opportunities approved: an Action for the "
               "executor", "opportunities.approved"),
    InfoMetric("opportunities_refused", "counter", "Opportunities refused, per reason code",
               "opportunities.refused_by_reason.*", ("reason",)),
)

# roles.executor:Executor (info: engine/chain/desk.py Desk.info); profits in the token's
# smallest unit (wei of WETH, 1e-6 of USDC...), exact as long as a float holds them (2**53)
EXECUTOR = (
    InfoMetric("executions", "counter", "Actions by outcome: taken, paper (simulated), signed, "
               "sent, landed, reverted, refused, rejected, dropped, replaced",
               "counts.*", ("state",)),
    InfoMetric("executions_landed", "counter", "Transactions mined and successful, per chain",
               "profit.*.landed", ("chain",)),
    InfoMetric("reverts", "counter", "Transactions mined and reverted, per chain",
               "profit.*.reverted", ("chain",)),
    InfoMetric("profit_realised", "counter", "Profit the owner received, per chain and token "
               "(smallest unit of the token)", "profit_by_token.*.*", ("chain", "token")),
    InfoMetric("profit_realised_chain", "counter", "Realised profit per chain, every token's "
               "smallest units summed (as status shows it)", "profit.*.realised", ("chain",)),
    InfoMetric("gas_spent_wei", "counter", "Gas paid by our transactions, per chain (wei)",
               "profit.*.gas_wei", ("chain",)),
    InfoMetric("executions_pending", "gauge", "Transactions sent and not yet final", "pending"),
)
