"""Reports rendered from a run's summary dict."""
