"""Running a sweep inside an MPI job: the spec, the local launcher, the harness (agree, warm up,
time, aggregate, validate), the watchdog, fault injection and progress lines."""
