"""plan_rings: a role's `reads` (the webhook hand-off's wiring) and the broadcast outboxes."""
from pathlib import Path

from engine import config
from engine.config import RoleConfig
from engine.core.wiring import plan_rings


class _Cfg:
    def __init__(self, *roles):
        self.roles = {r.name: r for r in roles}


def _roles(reads=()):
    return (RoleConfig(name="monitor-base", kind="m", chains=("base",), reads=reads),
            RoleConfig(name="monitor-polygon", kind="m", chains=("polygon",), reads=reads),
            RoleConfig(name="rx", kind="r", subscribe=False),
            RoleConfig(name="spotter", kind="s", chains=("base",)),
            RoleConfig(name="executor", kind="e", subscribe=False, inbox="interrupt"),
            RoleConfig(name="coordinator", kind="c", subscribe=False, inbox="poll"))


SOURCES = {"monitor-base", "monitor-polygon"}


def test_without_reads_every_outbox_is_broadcast_and_sources_read_nothing():
    p = plan_rings(_Cfg(*_roles()), SOURCES)
    assert p["inputs"]["monitor-base"] == [] and p["inputs"]["monitor-polygon"] == []
    assert "out.rx" in p["inputs"]["executor"] and "out.rx" in p["inputs"]["coordinator"]
    assert p["subscribers"]["out.rx"] == ["executor"]          # poll roles are not signalled


def test_reads_gives_sources_the_ring_and_keeps_it_from_the_inbox_roles():
    p = plan_rings(_Cfg(*_roles(reads=("rx",))), SOURCES)
    assert p["inputs"]["monitor-base"] == ["out.rx"]
    assert p["inputs"]["monitor-polygon"] == ["out.rx"]
    assert sorted(p["subscribers"]["out.rx"]) == ["monitor-base", "monitor-polygon"]
    for r in ("executor", "coordinator"):
        assert "out.rx" not in p["inputs"][r]
        assert "out.spotter" in p["inputs"][r]          # the other outboxes still broadcast
    assert p["subscribers"]["out.spotter"] == ["executor"]
    assert p["emits"]["monitor-base"] == ["events.base"]   # still the only writer of its ring


def test_reads_naming_a_missing_role_or_itself_reads_nothing():
    roles = list(_roles())
    roles[3] = RoleConfig(name="spotter", kind="s", chains=("base",), reads=("nobody", "spotter"))
    p = plan_rings(_Cfg(*roles), SOURCES)
    assert p["inputs"]["spotter"] == ["events.base"]


def test_moralis_section_makes_every_chain_monitor_read_the_receiver(tmp_path: Path):
    p = tmp_path / "engine.toml"
    p.write_text('[moralis]\n\n[roles.monitor-base]\nkind = "roles.monitor:ChainMonitor"\n'
                 'chains = ["base"]\n\n[roles.other]\nkind = "roles.monitor:SyntheticSource"\n'
                 'chains = ["polygon"]\n')
    cfg = config.load(p, check_env=False)
    assert cfg.roles["monitor-base"].reads == ("moralis-receiver",)
    assert cfg.roles["other"].reads == ()
    assert config.load(Path(__file__).parents[2] / "engine.toml", check_env=False) \
        .roles["monitor-base"].reads == ()      # no [moralis]: nothing read


def test_a_quiet_subscriber_reads_the_events_rings_and_is_never_interrupted_by_them():
    """The executor keeps replicas of its chains (`subscribe = "quiet"`): it reads events.<c>,
    drained at each switch its inbox causes; only the agents are signalled by those rings."""
    roles = list(_roles())
    roles[4] = RoleConfig(name="executor", kind="e", chains=("base", "polygon"),
                          subscribe="quiet", inbox="interrupt")
    p = plan_rings(_Cfg(*roles), SOURCES)
    assert {"events.base", "events.polygon"} <= set(p["inputs"]["executor"])
    assert p["subscribers"]["events.base"] == ["spotter"]
    assert p["subscribers"]["events.polygon"] == []
    assert p["subscribers"]["out.spotter"] == ["executor"]
    # with subscribe = false it reads no events ring at all
    roles[4] = RoleConfig(name="executor", kind="e", chains=("base",), subscribe=False,
                          inbox="interrupt")
    assert not any(r.startswith("events.") for r in plan_rings(_Cfg(*roles), SOURCES)["inputs"]["executor"])


def test_subscribe_takes_true_false_or_quiet(tmp_path):
    base = '[roles.x]\nkind = "roles.agents:Executor"\nchains = ["base"]\ninbox = "interrupt"\n'
    (tmp_path / "ok.toml").write_text(base + 'subscribe = "quiet"\n')
    assert config.load(tmp_path / "ok.toml").roles["x"].subscribe == "quiet"
    (tmp_path / "bad.toml").write_text(base + 'subscribe = "loud"\n')
    try:
        config.load(tmp_path / "bad.toml")
    except config.ConfigError as e:
        assert 'roles.x.subscribe: must be true, false or "quiet"' in str(e)
    else:
        raise AssertionError("subscribe = \"loud\" was accepted")


def test_every_agent_reads_the_coordinators_announcements_and_the_executor_does_not():
    cfg = config.load(Path(__file__).parents[2] / "engine.toml", check_env=False)
    agents = ("arbitrum-spotter", "base-analyst", "polygon-specialist")
    assert all(cfg.roles[a].reads == ("alphago-coordinator",) for a in agents)
    assert cfg.roles["flash-loan-executor"].reads == ()
    assert cfg.roles["alphago-coordinator"].reads == ()
    p = plan_rings(cfg, {n for n in cfg.roles if n.startswith("monitor-")})
    assert sorted(p["subscribers"]["out.alphago-coordinator"]) == sorted(agents)
    assert "out.alphago-coordinator" not in p["inputs"]["flash-loan-executor"]
    assert "out.arbitrum-spotter" in p["inputs"]["flash-loan-executor"]


def test_a_disabled_coordinator_is_read_by_nobody(tmp_path: Path):
    p = tmp_path / "engine.toml"
    p.write_text('[roles.c]\nkind = "roles.agents:Coordinator"\nenabled = false\n'
                 '[roles.s]\nkind = "roles.agents:Spotter"\nchains = ["arbitrum"]\n')
    assert config.load(p, check_env=False).roles["s"].reads == ()
