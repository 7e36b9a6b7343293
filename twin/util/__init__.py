"""Layer-free helpers (standard library only): the grammars for text from outside and how instants
are shown. Every layer may import them (model, engine, services, the CLI and the dashboard), and
they import nothing of the twin, so a rule about text is written once for all of them."""
