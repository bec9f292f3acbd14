"""Running experiments: sweeps and replications (:mod:`.runner`) on an
executor (:mod:`.executors`: serial, local processes, Dask), a store of
finished runs for resuming (:mod:`.store`), progress (:mod:`.progress`),
statistics (:mod:`.stats`, :mod:`.precision`, :mod:`.warmup`), result files
(:mod:`.output`), figures (:mod:`.plots`, :mod:`.plotspec`), the report
(:mod:`.report`), the parameter reference (:mod:`.reference`) and message
traces (:mod:`.trace`)."""
