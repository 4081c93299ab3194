"""A finished (or interrupted) sweep read back from MLflow (`read`) and turned into a report: what it says
(`content`), its plots (`plots`) and the Markdown (`report`). Never imports the engine: no Ray needed."""
