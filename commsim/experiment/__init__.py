"""Running experiments: sweeps and replications (:mod:`.runner`), statistics
(:mod:`.stats`), result files (:mod:`.output`), figures (:mod:`.plots`) and
message traces (:mod:`.trace`)."""
