"""Pure statistics, no I/O: seed-group statistics (`seeds`), paired verdicts with the family-wise
correction (`verdicts`), and power / seed planning (`planning`)."""
