"""Ray at work: the session (`ray_session`), resources, the group trainables (`group_trial`, `sim_trial`)
with their aggregation and rung metrics, the searchers, ASHA (`scheduler`), the checks before start
(`preflight`), and the only Tuner assembly (`tuner`), for sweeps and confirmation stages alike."""
