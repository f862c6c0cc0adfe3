"""Workers: lease due runs with FOR UPDATE SKIP LOCKED, run their pipelines, record every attempt."""
