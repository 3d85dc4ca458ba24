"""The load-test application (``task=run load=seed_phases``): open-loop phases of
independent requests through a micro-batcher, latency and energy per phase, SLA verdicts."""
