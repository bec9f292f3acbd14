"""Each pattern family's standard figures, drawn from a finished experiment's
``summary``/``runs`` (and side tables) without re-simulating.  Shared plotting
helpers live in :mod:`commsim.experiment.plots`."""
