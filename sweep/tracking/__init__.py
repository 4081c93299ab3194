"""MLflow and the terminal: the layout's names (`tags`), the writing Tune callback (`callback`) with its
held-back writes (`pending`), the one reader (`queries`), params and their redaction (`params`), and the
live progress and leaderboard (`progress`)."""
