"""What every layer of the service shares, with no Ray and no MLflow: group status and outcome, the one
ranking, the sweep folder layout and storage, typed trial specs, secrets, schedule plots."""
