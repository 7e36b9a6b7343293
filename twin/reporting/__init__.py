"""Run reports: the summary of a run (printed and as JSON), its HTML page of plots, and the
comparison of branches."""
