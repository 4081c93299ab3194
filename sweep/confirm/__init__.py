"""The confirmation stage of a finished sweep: plan (`plan`), run through the engine (`stages`), report
(`report`), downstream evaluation (`lm_eval`), and the whole of it (`workflow.confirm`).

Nothing is imported here: `plan` and `report` are read without Ray, and importing the package must not pull
in the engine (Ray Train, torch) for them."""
